"""tocsin: declare colour-coded threat levels and publish them everywhere at once."""

__version__ = "0.1.0"
