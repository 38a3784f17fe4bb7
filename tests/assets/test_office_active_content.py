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


def test_a_macro_sheet_relationship_is_refused(upload, asset_storage):
    original = xlsx_bytes()
    rels = entry(original, "xl/_rels/workbook.xml.rels").replace(
        b"</Relationships>",
        b'<Relationship Id="rId99" Type="http://schemas.microsoft.com/office/2006/relationships/'
        b'xlMacrosheet" Target="worksheets/sheet9.xml"/></Relationships>',
    )
    data = rezip(original, replace={"xl/_rels/workbook.xml.rels": rels}, add={"xl/worksheets/sheet9.xml": MACROSHEET})
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


def test_a_dde_field_whose_name_a_nested_field_computes_is_refused(upload, asset_storage):
    nested = instruction_runs(" QUOTE 68 68 69 65 85 84 79 ", result="DDEAUTO")
    body = (
        b'<w:p><w:r><w:fldChar w:fldCharType="begin"/></w:r>'
        + nested
        + b'<w:r><w:instrText xml:space="preserve"> c:\\\\windows\\\\system32\\\\cmd.exe</w:instrText></w:r>'
        + b'<w:r><w:fldChar w:fldCharType="end"/></w:r></w:p>'
    )
    data = with_document_body(docx_bytes(image=False), body)
    assert_refused(upload, asset_storage, data, "quote.docx", "office_dde")


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


def test_an_excel_dde_link_is_refused(upload, asset_storage):
    link = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        b'<externalLink xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        b'<ddeLink ddeService="cmd" ddeTopic="/c calc"><ddeItems><ddeItem name="A0" advise="1"/>'
        b"</ddeItems></ddeLink></externalLink>"
    )
    override = (
        b'<Override PartName="/xl/externalLinks/externalLink1.xml" '
        b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.externalLink+xml"/>'
    )
    data = with_content_type(rezip(xlsx_bytes(), add={"xl/externalLinks/externalLink1.xml": link}), override)
    assert_refused(upload, asset_storage, data, "link.xlsx", "office_dde")


def test_pipes_in_strings_and_sheet_names_are_not_dde(upload):
    data = xlsx_with_formulas('="a|b"&"c"', "='Data|2024'!B1*2", '=IF(B1>1,"x|y","")')
    asset = upload(data, "pipes.xlsx")
    assert asset.page_count == 1


# --- XML parts under another extension --------------------------------------------------------

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
