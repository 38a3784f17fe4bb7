"""Office Open XML packages (DOCX, XLSX, PPTX): what is accepted is decided here, by content.

An OOXML file is a ZIP archive whose ``[Content_Types].xml`` names the main part of exactly one
of the three document types. ``package_check`` reads the archive from the (decrypting) reader
and refuses, each with its own code (``assets.rejections``):

- a macro-enabled or active document: a ``vbaProject.bin`` (or ``vbaData.xml``) entry anywhere,
  an ``activeX`` folder, an OLE object (a ``.bin`` under ``embeddings/``), an embedded
  macro-enabled package (by name, and **any entry that is itself a ZIP archive is checked as a
  package of its own**, whatever its name: every rule here applies inside it, within the outer
  package's byte and entry budgets, at most ``MAX_NESTING`` levels deep, else
  ``office_nesting``; an entry with a ZIP end record at its end that does not start as an
  archive is ``ambiguous``), **any entry whose content is an OLE compound file** (first bytes
  ``D0 CF 11 E0 A1 B1 1A E1``: an embedded legacy ``.doc/.xls/.ppt`` can carry VBA, whatever
  its name or content type), an Excel 4.0 macro sheet (a ``macrosheets`` folder, a
  ``ms-excel.macrosheet`` / ``ms-excel.intlmacrosheet`` content type, an ``xlMacrosheet``
  relationship), or a content type that names macros, VBA, ActiveX or OLE objects
  (``office_macros``) — nothing in the file is ever executed, we only read XML;
- a DDE field or link (``office_dde``): a Word field whose instruction is ``DDE`` or ``DDEAUTO``
  (the text of one field's instruction joined, whatever element holds it, ``w:instrText`` or
  ``w:t``; ``w:fldSimple/@w:instr``; also a field whose name has not ended, with white space,
  when a nested field — complex or simple — begins: the nested result would become part of the
  name; an expression field, ``=``, cannot be DDE), an Excel ``ddeLink`` (``externalLinks``), or
  a formula of the ``app|topic!item`` form — in a cell or chart (``f``), a defined name,
  conditional formatting (``formula``), data validation (``formula1``, ``formula2``), a table
  (any ``…Formula`` element) or a pivot table's ``formula`` attribute (``=cmd|' /c calc'!A1``).
  Decided on the tree the safety parse already built: one pass over its elements, no regular
  expression on the raw bytes;
- an encrypted entry (``office_encrypted``; an encrypted OOXML file is a CFB container, which
  ``content.sniff_prefix`` refuses with the same code);
- more entries, more uncompressed bytes in all, or a higher compression ratio for one entry than
  the limits (``office_archive_limit``, 413): from the central directory first, then **measured
  while decompressing** — the declared sizes are never trusted alone; entries that overlap or
  leave gaps (the "non-recursive zip bomb" and polyglot tricks) and duplicate names are refused;
- any XML part with a DOCTYPE or entity declaration (``office_unsafe_xml``, parsed with
  ``defusedxml``): every ``.xml``, ``.rels`` or ``.vml`` entry, and every part whose content type
  (its ``Override``, else the ``Default`` of its extension) ends in ``xml`` — a main part
  registered as ``/word/document.txt`` is parsed like any other;
- a relationship with ``TargetMode="External"`` other than a hyperlink (``office_external_
  relationship``): remote templates, linked images, linked OLE data. Hyperlinks are text; nothing
  is ever fetched.

Limits (settings, with defaults): ``OFFICE_MAX_ENTRIES`` 2000, ``OFFICE_MAX_UNCOMPRESSED_MB``
100, ``OFFICE_MAX_COMPRESSION_RATIO`` 100 (for entries over 64 KiB uncompressed).
"""

from __future__ import annotations

import io
import posixpath
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeElementTree
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from assets import content, rejections
from assets.content import DOCX, PPTX, XLSX, Kind

MAIN_TYPES = {
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml": DOCX,
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml": XLSX,
    "application/vnd.openxmlformats-officedocument.presentationml.presentation.main+xml": PPTX,
}
# Content types that mean active content: macros (any *.macroEnabled* type, VBA projects),
# ActiveX controls and embedded OLE objects.
_ACTIVE_TYPE_MARKERS = (
    "macroenabled",
    "vbaproject",
    "vbadata",
    "activex",
    "oleobject",
    "ms-office.vba",
    "ms-excel.macrosheet",  # Excel 4.0 (XLM) macro sheets
    "ms-excel.intlmacrosheet",
)
_ACTIVE_FOLDERS = {"activex", "macrosheets", "intlmacrosheets"}
# Relationship types that attach active content (Excel 4.0 macro sheets, VBA, ActiveX, OLE).
_ACTIVE_RELATIONSHIP_MARKERS = ("macrosheet", "vbaproject", "activex", "oleobject")
# The OLE compound file (CFB) signature: legacy .doc/.xls/.ppt, OLE objects, VBA storage.
CFB_SIGNATURE = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
OFFICE_DDE = _(
    "The Office file contains a DDE field, link or formula (a command that can start another program) "
    "and is refused: remove the field or link, or save its result as plain text."
)
_ACTIVE_NAMES = {"vbaproject.bin", "vbadata.xml", "vbaprojectsignature.bin", "vbaprojectsignatureagile.bin"}
_ACTIVE_EXTENSIONS = {"docm", "dotm", "xlsm", "xltm", "xlam", "xlsb", "pptm", "potm", "ppsm", "ppam", "bin"}
_XML_EXTENSIONS = {"xml", "rels", "vml"}
# Elements whose text is an Excel formula: cells and charts (``f``), defined names, conditional
# formatting (``formula``) and data validation (``formula1``, ``formula2``); and any element
# named ``…Formula`` (a table's ``calculatedColumnFormula``, ``totalsRowFormula``).
_FORMULA_ELEMENTS = {"f", "definedName", "formula", "formula1", "formula2"}
_HYPERLINK = "/relationships/hyperlink"
_CT_NS = "{http://schemas.openxmlformats.org/package/2006/content-types}"
_RELS_NS = "{http://schemas.openxmlformats.org/package/2006/relationships}"
_ZIP_SIGNATURE = b"PK\x03\x04"
_HEAD_SIZE = len(CFB_SIGNATURE)
_ZIP_END = b"PK\x05\x06"  # the end-of-central-directory record's signature
_ZIP_TAIL = 65536 + 22  # a ZIP comment is at most 64 KiB: the record lies within this of the end
# How deep packages may nest (a document embedding a workbook that embeds a document is 2).
MAX_NESTING = 2
OFFICE_NESTING = _(
    "The Office file embeds documents nested more than {limit} levels deep and is refused: "
    "save the embedded documents as separate files."
)
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_READ_SIZE = 64 * 1024
# The ratio limit applies to entries larger than this (a short, repetitive XML part compresses
# far beyond any sane ratio and costs nothing).
RATIO_FLOOR = 64 * 1024


@dataclass(frozen=True)
class Limits:
    entries: int
    total_bytes: int
    ratio: int

    @classmethod
    def configured(cls) -> Limits:
        return cls(
            entries=getattr(settings, "OFFICE_MAX_ENTRIES", 2000),
            total_bytes=getattr(settings, "OFFICE_MAX_UNCOMPRESSED_MB", 100) * 1024 * 1024,
            ratio=getattr(settings, "OFFICE_MAX_COMPRESSION_RATIO", 100),
        )


class PackageReader:
    """Entries of a checked package, read within the limits (the byte budget is shared by every
    read through this object: the checks and the document reader together)."""

    def __init__(self, archive: zipfile.ZipFile, limits: Limits, read_total: int = 0, entries_total: int = 0) -> None:
        self.archive = archive
        self.limits = limits
        self.read_total = read_total
        # Entries of this package and of every package checked inside it so far.
        self.entries_total = entries_total or len(archive.infolist())

    def names(self) -> list[str]:
        return [info.filename for info in self.archive.infolist()]

    def read(self, name: str) -> bytes:
        return b"".join(self.chunks(self.archive.getinfo(name)))

    def chunks(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        produced = 0
        ratio_cap = self.limits.ratio * max(info.compress_size, 1)
        try:
            with self.archive.open(info) as entry:
                while chunk := entry.read(_READ_SIZE):
                    produced += len(chunk)
                    self.read_total += len(chunk)
                    if produced > RATIO_FLOOR and produced > ratio_cap:
                        raise rejections.office_too_big(ratio=self.limits.ratio)
                    if self.read_total > self.limits.total_bytes:
                        raise rejections.office_too_big(size_bytes=self.limits.total_bytes)
                    yield chunk
        except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, NotImplementedError):
            raise rejections.office_unreadable() from None


def _open_archive(reader: BinaryIO) -> zipfile.ZipFile:
    reader.seek(0)
    try:
        return zipfile.ZipFile(reader)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, struct.error):
        raise rejections.office_unreadable() from None


def _check_layout(
    reader: BinaryIO, archive: zipfile.ZipFile, limits: Limits, already_read: int = 0, already_entries: int = 0
) -> None:
    """Entries from the central directory: within the limits (``already_read``,
    ``already_entries``: what the outer packages have already spent of them), unique, not
    encrypted, stored or deflated, and laid out back to back from offset 0 up to the central
    directory."""
    infos = archive.infolist()
    if not infos:
        raise rejections.office_unreadable()
    if already_entries + len(infos) > limits.entries:
        raise rejections.office_too_big(entries=limits.entries)
    if already_read + sum(info.file_size for info in infos) > limits.total_bytes:
        raise rejections.office_too_big(size_bytes=limits.total_bytes)
    names = set()
    for info in infos:
        folded = info.filename.lower()
        if folded in names:
            raise rejections.ambiguous_content()
        names.add(folded)
        if info.flag_bits & 0x1:
            raise rejections.office_encrypted()
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise rejections.office_unreadable()
        if info.file_size > RATIO_FLOOR and info.file_size > limits.ratio * max(info.compress_size, 1):
            raise rejections.office_too_big(ratio=limits.ratio)
    position = 0
    for info in sorted(infos, key=lambda item: item.header_offset):
        if info.header_offset != position:
            raise rejections.ambiguous_content()  # overlapping entries, or bytes hidden between them
        reader.seek(info.header_offset)
        header = reader.read(_LOCAL_HEADER.size)
        if len(header) < _LOCAL_HEADER.size or header[:4] != b"PK\x03\x04":
            raise rejections.office_unreadable()
        fields = _LOCAL_HEADER.unpack(header)
        position = info.header_offset + _LOCAL_HEADER.size + fields[9] + fields[10] + info.compress_size
        if info.flag_bits & 0x8:  # a data descriptor follows the data: 12 to 24 bytes
            reader.seek(position)
            descriptor = reader.read(4)
            position += (4 if descriptor == b"PK\x07\x08" else 0) + (20 if info.file_size >= 0xFFFFFFFF else 12)
    if position != archive.start_dir:
        raise rejections.ambiguous_content()


def _parse_xml(data: bytes):
    try:
        return SafeElementTree.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise rejections.office_unsafe_xml() from None
    except SafeElementTree.ParseError:
        raise rejections.office_unreadable() from None


def _check_names(names: list[str]) -> None:
    for name in names:
        folded = name.lower()
        parts = folded.split("/")
        extension = posixpath.splitext(folded)[1].lstrip(".")
        if parts[-1] in _ACTIVE_NAMES or _ACTIVE_FOLDERS.intersection(parts):
            raise rejections.office_macros()
        if "embeddings" in parts and extension in _ACTIVE_EXTENSIONS:
            raise rejections.office_macros()


def office_nesting() -> rejections.AssetRejected:
    return rejections.AssetRejected("office_nesting", OFFICE_NESTING.format(limit=MAX_NESTING))


def office_dde() -> rejections.AssetRejected:
    return rejections.AssetRejected("office_dde", OFFICE_DDE)


def _xml_content_type(content_type: str) -> bool:
    """``…/xml``, ``…+xml`` (and any other type ending in ``xml``): a part the safety parse covers."""
    return content_type.split(";", 1)[0].strip().lower().endswith("xml")


def _xml_parts(content_types, names: list[str]) -> set[str]:
    """The entries (as named in the archive) that ``[Content_Types].xml`` declares as XML: by
    their ``Override`` (part names compare case-insensitively), else by the ``Default`` of
    their extension; plus every ``.xml``, ``.rels`` and ``.vml`` entry whatever it declares."""
    overrides: dict[str, str] = {}
    defaults: dict[str, str] = {}
    for element in content_types:
        content_type = element.get("ContentType") or ""
        if element.tag == f"{_CT_NS}Override":
            overrides[(element.get("PartName") or "").lstrip("/").lower()] = content_type
        elif element.tag == f"{_CT_NS}Default":
            defaults[(element.get("Extension") or "").lstrip(".").lower()] = content_type
    parts = set()
    for name in names:
        folded = name.lower()
        extension = posixpath.splitext(folded)[1].lstrip(".")
        declared = overrides.get(folded, defaults.get(extension, ""))
        if extension in _XML_EXTENSIONS or _xml_content_type(declared):
            parts.add(name)
    return parts


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def _attribute(element, local_name: str) -> str:
    for key, value in element.attrib.items():
        if _local(key) == local_name:
            return value
    return ""


def _dde_instruction(instruction: str) -> bool:
    """A Word field instruction that names DDE (``DDE``, ``DDEAUTO``; field names are not
    case-sensitive, a leading backslash-free word)."""
    words = instruction.split(None, 1)
    return bool(words) and words[0].strip('"').upper() in ("DDE", "DDEAUTO")


def _dde_formula(formula: str) -> bool:
    """An Excel formula (or defined name) with a DDE reference, ``app|topic!item`` (``cmd|' /c
    calc'!A1``): a ``|`` outside string literals and quoted sheet names. Linear."""
    if "|" not in formula:
        return False
    outside, quote = [], ""
    for character in formula:
        if quote:
            if character == quote:
                quote = ""  # a doubled quote closes and reopens: still inside, as intended
            continue
        if character in "\"'":
            quote = character
            continue
        outside.append(character)
    return "|" in "".join(outside)


def _name_complete(instruction: str) -> bool:
    """Whether a field instruction's first word (the field's name) has ended: some text, then
    white space. Until then a nested field's result would become part of the name."""
    words = instruction.lstrip()
    # "=" names an expression field ({ ={ PAGE }-1 }): whatever follows, it is no DDE.
    return words.startswith("=") or any(character.isspace() for character in words)


def _check_dde(root) -> None:
    """DDE in one parsed part (see the module's docstring): one pass over the tree. The runs of a
    Word field (``fldChar`` begin … separate/end) are joined before the instruction is read, so
    a ``DDEAUTO`` split over several ``w:instrText`` elements is seen whole; nested fields keep
    their own buffers, and a field whose name would come from a nested field is refused too."""
    fields: list[tuple[list[str], bool]] = []  # (instruction text, in its result?) of each open field
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue  # a comment or processing instruction
        name = _local(element.tag)
        if name == "fldChar":
            kind = _attribute(element, "fldCharType")
            if kind == "begin":
                if fields and not fields[-1][1] and not _name_complete("".join(fields[-1][0])):
                    raise office_dde()  # the outer field's name would end in this field's result
                fields.append(([], False))
            elif kind == "separate" and fields and not fields[-1][1]:
                instruction, _result = fields.pop()
                if _dde_instruction("".join(instruction)):
                    raise office_dde()
                fields.append(([], True))
            elif kind == "end" and fields:
                instruction, result = fields.pop()
                if not result and _dde_instruction("".join(instruction)):
                    raise office_dde()
        elif name in ("instrText", "t"):
            # Text inside a field's instruction counts as instruction, whatever element holds it.
            if fields and not fields[-1][1]:
                fields[-1][0].append(element.text or "")
            elif name == "instrText" and _dde_instruction(element.text or ""):
                raise office_dde()
        elif name == "fldSimple":
            if fields and not fields[-1][1] and not _name_complete("".join(fields[-1][0])):
                raise office_dde()  # a simple field's result would end the outer field's name
            if _dde_instruction(_attribute(element, "instr")):
                raise office_dde()
        elif name in ("ddeLink", "ddeItem", "ddeItems", "ddeValues"):
            raise office_dde()
        elif name in _FORMULA_ELEMENTS or name.endswith("Formula"):
            if _dde_formula(element.text or ""):
                raise office_dde()
        if _dde_formula(_attribute(element, "formula")):
            raise office_dde()  # a pivot table's calculated field or item
    for instruction, result in fields:
        if not result and _dde_instruction("".join(instruction)):
            raise office_dde()


def _check_content_type(content_type: str) -> None:
    if any(marker in content_type.lower() for marker in _ACTIVE_TYPE_MARKERS):
        raise rejections.office_macros()


def _main_kind(content_types) -> tuple[Kind, str]:
    mains: list[tuple[Kind, str]] = []
    for element in content_types:
        content_type = (element.get("ContentType") or "").strip()
        _check_content_type(content_type)
        if content_type in MAIN_TYPES:
            if element.tag != f"{_CT_NS}Override":
                raise rejections.unsupported_type()
            mains.append((MAIN_TYPES[content_type], (element.get("PartName") or "").lstrip("/")))
    if len(mains) != 1:
        raise rejections.unsupported_type()
    return mains[0]


def _check_relationships(root) -> None:
    for relationship in root.iter(f"{_RELS_NS}Relationship"):
        if any(marker in (relationship.get("Type") or "").lower() for marker in _ACTIVE_RELATIONSHIP_MARKERS):
            raise rejections.office_macros()
        if (relationship.get("TargetMode") or "").lower() == "external":
            if not (relationship.get("Type") or "").endswith(_HYPERLINK):
                raise rejections.office_external()


def _check_entries(package: PackageReader, content_types, depth: int) -> None:
    """Every entry of a package, decompressed within the limits (CRC checked): XML parts safety
    parsed and searched for active relationships and DDE; any other entry refused when it is an
    OLE compound file, and checked as a package of its own, whatever its name, when it is a ZIP
    archive (an embedded workbook or document: charts embed one)."""
    xml_parts = _xml_parts(content_types, package.names())
    for info in package.archive.infolist():
        if info.filename in xml_parts and info.filename != "[Content_Types].xml":
            data = b"".join(package.chunks(info))
            if data.startswith(CFB_SIGNATURE):
                raise rejections.office_macros()
            root = _parse_xml(data)
            if info.filename.lower().endswith(".rels"):
                _check_relationships(root)
            _check_dde(root)
            continue
        _check_binary_entry(package, info, depth)


def _check_binary_entry(package: PackageReader, info: zipfile.ZipInfo, depth: int) -> None:
    """A part that is not XML (media, embeddings), streamed: refused when it is an OLE compound
    file; checked as a package of its own when it is a ZIP archive, which is buffered (within the
    byte budget the reads already count); refused as ambiguous when a ZIP end record sits at its
    end although it does not start as one (an archive behind a prefix, which ZIP readers find
    from the end); anything else is only inflated and CRC checked."""
    head, tail, kept = b"", b"", None
    for chunk in package.chunks(info):
        if len(head) < _HEAD_SIZE:
            head += chunk[: _HEAD_SIZE - len(head)]
            if head.startswith(CFB_SIGNATURE):
                raise rejections.office_macros()  # an OLE compound file: a legacy document, VBA
            if kept is None and head.startswith(_ZIP_SIGNATURE):
                if depth + 1 > MAX_NESTING:
                    raise office_nesting()
                kept = io.BytesIO()
        if kept is not None:
            kept.write(chunk)
        else:
            tail = (tail + chunk)[-_ZIP_TAIL:]
    if kept is not None:
        _check_embedded(package, kept, depth + 1)
    elif _ZIP_END in tail:
        raise rejections.ambiguous_content()


def _check_embedded(outer: PackageReader, reader: io.BytesIO, depth: int) -> None:
    """A ZIP archive inside a package, checked like the package itself (names, layout, content
    types, every entry) with what is left of the outer package's budgets: bytes inflated and
    entries, counted over every level together."""
    archive = _open_archive(reader)
    _check_layout(reader, archive, outer.limits, already_read=outer.read_total, already_entries=outer.entries_total)
    package = PackageReader(
        archive, outer.limits, read_total=outer.read_total, entries_total=outer.entries_total + len(archive.infolist())
    )
    names = package.names()
    _check_names(names)
    content_types = []
    if "[Content_Types].xml" in names:
        content_types = _parse_xml(package.read("[Content_Types].xml"))
        for element in content_types:
            _check_content_type(element.get("ContentType") or "")
    try:
        _check_entries(package, content_types, depth)
    finally:
        outer.read_total, outer.entries_total = package.read_total, package.entries_total


def package_check(reader: BinaryIO, size: int) -> tuple[Kind, PackageReader]:
    """Check the whole package (see the module's docstring); its kind and a bounded reader."""
    archive = _open_archive(reader)
    limits = Limits.configured()
    _check_layout(reader, archive, limits)
    package = PackageReader(archive, limits)
    names = package.names()
    _check_names(names)
    if "[Content_Types].xml" not in names:
        raise rejections.unsupported_type()  # a ZIP archive, not an Office document
    content_types = _parse_xml(package.read("[Content_Types].xml"))
    kind, main_part = _main_kind(content_types)
    reader.seek(0)
    if content.markup_in(reader.read(content.PREFIX_SIZE)):
        raise rejections.ambiguous_content()  # an uncompressed page or script at the head
    if main_part not in names:
        raise rejections.office_unreadable()
    _check_entries(package, content_types, depth=0)
    return kind, package
