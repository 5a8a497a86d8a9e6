"""The pure domain: schemes, areas, declarations, effective levels and the audit chain.

Imports only the standard library; time and settings arrive as arguments.
"""
