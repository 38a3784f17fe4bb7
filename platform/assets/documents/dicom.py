"""DICOM Part 10 files for hospitals: de-identified before anything is stored or shown, rendered
for the model with the file's own window.

**De-identification** (``dicom_deidentify``) follows the Basic Application Level Confidentiality
Profile of DICOM PS3.15 Annex E (table E.1-1, no options): every attribute of ``BASIC_PROFILE``
gets its action, in the data set and in every sequence item —

- ``X`` removed; ``Z`` emptied (zero length); ``D`` replaced by a dummy value of its VR (a
  sequence is emptied instead); ``U`` UIDs replaced by ``2.25.<HMAC-SHA256>`` UIDs, the same
  original giving the same new UID within a department (so a study's files still belong
  together) and nothing outside the server able to reverse it;
- where the table allows a choice the strictest is taken: ``X/Z``, ``X/D``, ``X/Z/D``,
  ``X/Z/U*`` → removed, ``Z/D`` → emptied;
- plus every private attribute (odd groups), curves (groups 50xx), overlays (groups 60xx, whose
  bitmaps may carry burned-in text), the GPS attributes (0016,0070–008E) and every file meta
  element but ``_META_KEPT`` (source, sending and receiving AE titles, presentation addresses,
  RTV identifiers, private information are removed); ``MediaStorageSOPInstanceUID`` follows
  the new SOP Instance UID; ``PatientIdentityRemoved`` = YES and ``DeidentificationMethod`` are
  set; the 128-byte preamble is zeroed.

What was done is listed by tag and keyword only (``Deidentification.audit_details``), never with a
value. Identifiers in the pixels cannot be removed by editing attributes, so these are refused:
``BurnedInAnnotation = YES`` (``dicom_burned_in_annotation``, whenever the file is read);
``RecognizableVisualFeatures = YES`` (``dicom_recognizable_features``), and an image of a kind
that commonly has identifiers burned in — Modality US, SC, XA, ES, OT or XC, or a Secondary
Capture, ultrasound, X-ray angiography or visible-light SOP class — unless it says
``BurnedInAnnotation = NO`` (``dicom_burned_in_unconfirmed``; multi-valued attributes are read
value by value: any YES refuses, NO counts only when every value is NO), both
at upload (``_check_identifiable``).

**Decoding**: native (uncompressed) pixel data and the compressed transfer syntaxes pydicom has
an installed decoder for (``pydicom.pixels.get_decoder(...).is_available``); anything else,
and the deflated transfer syntax (a whole-data-set zlib stream, unbounded when inflated), is
refused cleanly. At most ``MAX_PDF_PAGES`` frames, all frames' pixels together within
``MAX_IMAGE_PIXELS``; a file of at most ``DICOM_MAX_MB`` (default 64) is read into memory for
this — after it was staged encrypted, and the de-identified bytes are staged again (plaintext
never touches the disk).

**Rendering** (``dicom_page_images``, a page per frame): monochrome frames through the modality
LUT (``apply_modality_lut``: rescale slope/intercept) and the file's own VOI LUT or window
(``apply_voi_lut``, the first window), scaled to 8 bits over the window's output range (without
any: the frame's own minimum–maximum), MONOCHROME1 inverted; colour frames as RGB (palette colour
through its LUT).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from PIL import Image

from assets import content, rejections
from assets.documents.pages import PageText, TextSource

PROFILE_NAME = "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile"
# Tag -> action, from PS3.15 table E.1-1 (Basic Profile column). Z/D etc. written without "/".
_TABLE = """
00080050 Z 00184000 X 00400555 XZ 00080022 XZ 0008002a XZD 00181400 XD 001811bb D 00189424 X
00080032 XZ 00080017 U 00404035 X 001021b0 X 0040a353 X 00380010 X 00380020 X 00081084 X
00081080 X 00380021 X 00001000 X 00102110 X 0040b034 X 006a0006 X 006a0005 D 006a0003 D
00440004 X 40000010 X 00440104 D 00440105 X 04000562 D 0040a078 X 22000005 XZ 300a00c3 X
300c0127 D 300a00dd X 00101081 X 0014407e X 00181203 Z 0014407c X 0016004d X 00181007 X
04000115 D 04000310 X 00120060 Z 00120082 X 00120081 D 00120020 D 00120021 Z 00120072 X
00120071 X 00120030 Z 00120031 Z 00120010 D 00120040 D 00120042 D 00120051 X 00120050 Z
00400310 X 00400280 X 300a02eb X 00209161 U 3010000f Z 30100017 Z 30100006 U 00403001 X
30100013 U 0008009c Z 0008009d X 0050001b X 0040051a X 00400512 D 00700086 X 00700084 ZD
00080023 ZD 0040a730 D 00080033 ZD 00080107 D 00080106 D 00180010 ZD 00181042 X 00181043 X
0018a002 X 0018a003 X 00102150 X 21000040 X 21000050 X 0040a307 X 00380300 X 00080025 X
00080035 X 0040a07c X fffcfffc X 0040a121 D 0040a110 X 00181205 X 00181200 X 0018700c XD
00181204 X 00181012 X 0040a120 D 00181202 X 00189701 D 0018937f X 00082111 X 21000140 D
0018700a XD 3010001b Z 00500020 X 3010002d D 00181000 XZD 0016004b X 00181002 U 04000105 D
fffafffa X 04000100 U 00209164 U 00380030 X 00380040 X 00380032 X 300a079a X 4008011a X
40080119 X 300a0016 X 300a0013 U 3010006e U 00686226 D 0040a034 X 0040a035 X 00420011 D
00189517 XD 30100037 X 30100035 D 30100038 D 30100036 X 300a0676 X 00120087 X 00120086 X
00102160 X 00102161 X 00102162 X 00189804 D 00404011 X 00080058 U 0070031a U 00402017 Z
003a032b X 0040a023 X 0040a024 X 30080054 XD 300a0196 X 00340002 D 00340001 D 3010007f Z
300a0072 X 00189074 D 00209158 X 00200052 U 00340007 D 00189151 D 00189623 D 00181008 X
00100044 X 00100045 X 00100041 X 00181005 X 00700001 D 0072000a D 00081304 X 0040e004 X
00404037 X 00404036 X 00880200 X 00084000 X 00204000 X 00284000 X 00402400 X 003a0314 D
40080300 X 00686270 D 00080015 X 00080012 XD 00080013 XZD 00080014 U 04000600 X 00080081 X
00081040 X 00081041 X 00080082 XZD 00080080 XZD 00189919 ZD 00101050 X 30100085 X 3010004d XD
3010004c XD 00401011 X 300a0741 D 300a0742 D 300a0783 D 40080112 X 40080113 X 40080111 X
4008010c X 40080115 X 40080200 X 40080202 X 40080100 X 40080101 X 40080102 X 4008010b X
4008010a X 40080108 X 40080109 X 00180035 X 00180027 X 00083010 U 00402004 X 00380011 X
00380014 X 00120022 X 00120073 X 00120032 X 00120041 X 00120043 X 00120055 X 00100021 X
00380061 X 00380064 X 00400513 Z 00400562 Z 00402005 X 22000002 XZ 00281214 U 001021d0 X
0016004f X 00160050 X 00160051 X 0016004e X 00500021 X 04000404 X 0016002b X 0018100b U
30100043 Z 00020003 U 00102000 X 00101090 X 00101080 X 04000550 X 00203403 X 00203406 X
00203405 X 00203401 X 04000563 D 0040b03f X 0040b03b X 30080056 XD 0018937b X 003a0310 U
00081060 X 00401010 X 00100012 X 00100013 X 00081000 X 04000552 X 04000551 X 0040a192 X
0040a032 XD 0040a033 X 0040a402 U 0040a193 X 0040a171 U 00102180 X 00081072 XD 00081070 XZD
00402010 X 00402011 X 00402008 X 00402009 X 04000561 X 21000070 X 00120023 X 00101000 X
00101002 X 00101001 X 00080024 X 00080034 X 300a0760 D 00281199 U 0040a07a X 0040a082 Z
00101040 X 00101010 X 00100030 Z 00101005 X 00100032 X 00380400 X 00100050 X 00101060 X
00100010 Z 00100101 X 00100102 X 001021f0 X 00100040 Z 00102203 XZ 00101020 X 00102155 X
00102154 X 00101030 X 00104000 X 00100020 ZD 300a0794 X 300a0650 U 00380500 X 00401004 X
300a0792 X 300a078e X 00400243 X 00400254 X 00400250 X 00404051 X 00400251 X 00400253 X
00400244 X 00404050 X 00400245 X 00400241 X 00404030 X 00400242 X 00404028 X 00081050 X
00081052 X 00401102 X 00401104 X 00401103 X 00401101 D 0040a123 D 00100011 X 00081048 X
00081049 X 00081062 X 40080114 X 00402016 Z 00181004 X 30020123 X 30020121 X 001021c0 X
00400012 X 300a000e X 3010007b Z 30100081 Z 00700082 X 00700083 X 00701101 U 00701102 U
00081302 X 00081301 X 30100061 X 00404052 X 0044000b X 00100015 X 00100016 X 00181030 XD
00081088 X 00200027 X 00080019 U 300a0619 D 300a0623 D 300a067d Z 300a067c D 00181078 X
00181072 X 00181079 X 00181073 X 300c0113 X 0040100a X 00321030 X 3010005c Z 04000565 D
00402001 X 00401002 X 00321066 X 00321067 X 00741234 X 300a073a D 3010000b U 0040a13a D
04000402 X 300a0083 U 3010006f U 30100031 U 30060024 U 00404023 U 00081140 XZU 0040a172 U
00380004 X 00101100 X 00081120 X 00081111 XZD 04000403 X 00081155 U 00041511 U 00081110 XZ
300a0785 U 00080092 X 00080090 Z 00080094 X 00080096 X 00102152 X 300600c2 U 00400275 X
00321070 X 00401400 X 00321060 XZ 00401001 X 00401005 X 00189937 X 00001001 U 00741236 X
00321032 X 00321033 X 00189185 X 00102299 X 00102297 X 40084000 X 40080118 X 40080040 X
40080042 X 00080054 X 300e0004 Z 300e0008 XZ 300e0005 Z 3006004d X 3006002d X 30060028 X
30060038 X 300600a6 Z 3006004e X 30060026 Z 3006002e X 30060088 X 30060085 X 300a0615 Z
300a0611 Z 3010005a Z 300a0006 XD 300a0004 X 300a0002 D 300a0003 X 300a0007 XD 30100054 D
300a062a D 30100056 XD 3010003b U 30080162 D 30080164 D 30080166 D 30080168 D 0038001a X
0038001b X 0038001c X 0038001d X 00404034 X 0038001e X 00400006 X 0040000b X 00400007 X
00400004 X 00400005 X 00404008 X 00400009 X 00400011 X 00404010 X 00400002 X 00404005 X
00400003 X 00400001 X 00404027 X 00400010 X 00404025 X 00321020 X 00321021 X 00321000 X
00321001 X 00321010 X 00321011 X 00081303 X 0040b036 X 0072005e D 0072005f D 00720061 D
00720063 D 00720066 D 00720068 D 00720065 D 0072006a D 0072006c D 0072006e D 0072006b D
0072006d D 00720071 D 00720070 D 00080021 XD 0008103e X 0020000e U 00080031 XD 00380062 X
00380060 X 300a01b2 X 00100046 X 00100042 X 00100047 X 00100043 X 300a01a6 X 004006fa X
001021a0 X 01000420 X 00080018 U 30100015 U 0018936a D 00640003 U 00340005 D 00082112 XZU
300a0216 X 04000564 Z 30080105 XZ 00189369 D 300a022c D 300a022e D 00380050 X 0040050a X
00400602 X 00400551 D 00400610 Z 00400600 X 00400554 U 00189516 XD 00080055 X 00081010 XZD
00880140 U 30060008 Z 30060006 X 30060002 D 30060004 X 30060009 Z 00321040 X 00321041 X
00324000 X 00321050 X 00321051 X 00080020 Z 00081030 X 00200010 Z 00320012 X 0020000d U
00320034 X 00320035 X 00080030 Z 00320032 X 00320033 X 00440010 X 00200200 U 300a0054 U
00182042 U 0040a354 X 0040db0d U 0040db0c U 0040db07 X 0040db06 X 40004000 X 20300020 X
00100014 X 0040a122 D 0040a112 X 00181201 X 0018700e XD 00181014 X 00080201 X 00880910 X
00880912 X 00880906 X 00880904 X 00620021 U 00081195 U 00185011 X 30080024 D 30080025 D
30080250 XD 300a00b2 XZ 300a0608 D 300a0609 U 300a0700 U 30100077 XD 300a000b X 3010007a Z
30080251 XD 300a0736 D 300a0734 D 0018100a X 0040a124 U 00181009 X 30100033 D 30100034 D
0040a352 X 0040a358 X 0040a030 D 0040a088 Z 0040a075 D 0040a073 D 0040a027 D 00384000 X
003a0329 X 00189371 D 00189373 X 00189367 D
"""
BASIC_PROFILE: dict[int, str] = {
    int(tag, 16): action for tag, action in zip(_TABLE.split()[0::2], _TABLE.split()[1::2], strict=True)
}
BASIC_PROFILE.update({0x00160070 + offset: "X" for offset in range(0x1F)})  # GPS attributes
# The file meta information kept: group length, version, SOP class and instance (the new UID),
# transfer syntax, implementation class and version (the writing software). Everything else is
# removed and listed — source, sending and receiving AE titles (0002,0016/0017/0018), presentation
# addresses (0002,0026/0027/0028), RTV source and flow identifiers, private information —, any
# element a later edition adds included.
_META_KEPT = frozenset({0x00020000, 0x00020001, 0x00020002, 0x00020003, 0x00020010, 0x00020012, 0x00020013})
# Where identifiers are commonly burned into the pixels (ultrasound, screen captures, angiography,
# endoscopy, "other"): accepted only when the file says BurnedInAnnotation = NO.
BURNED_IN_LIKELY_MODALITIES = frozenset({"US", "SC", "XA", "ES", "OT", "XC"})  # XC: external-camera photos
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # .7 and its multi-frame .7.1 to .7.4
# The same kinds by SOP class, whatever the Modality says (it may be empty): a UID or its children.
BURNED_IN_LIKELY_SOP_CLASSES = {
    SECONDARY_CAPTURE_PREFIX: "Secondary Capture",
    "1.2.840.10008.5.1.4.1.1.6": "Ultrasound",  # .6.1 image, .6.2 enhanced volume
    "1.2.840.10008.5.1.4.1.1.3.1": "Ultrasound Multi-frame",
    "1.2.840.10008.5.1.4.1.1.12.1": "X-Ray Angiography",  # and .12.1.1 enhanced
    "1.2.840.10008.5.1.4.1.1.77.1": "Visible Light",  # endoscopy, microscopy, photographs
}
DICOM_RECOGNIZABLE = _(
    "The DICOM image is marked as showing recognizable visual features of the patient "
    "(RecognizableVisualFeatures = YES, such as a face) and cannot be de-identified: it is refused."
)
DICOM_BURNED_IN_UNCONFIRMED = _(
    "The DICOM image is of a kind that often has patient identifiers burned into its pixels "
    "({kind}), and it does not say BurnedInAnnotation = NO: it is refused. Check the image for "
    "names, IDs or dates in the pixels, then export it with BurnedInAnnotation = NO, or remove "
    "the text from the image before uploading."
)
_DEFLATED = "1.2.840.10008.1.2.1.99"
_LISTED = 500  # tags listed per action in the audit entry (the counts are always complete)
_DUMMY_TEXT = "ANONYMIZED"
_DUMMIES: dict[str, Any] = {
    "PN": "ANONYMIZED",
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "CS": "ANONYMIZED",
    "AE": "ANONYMIZED",
    "IS": "0",
    "DS": "0",
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "FL": 0.0,
    "FD": 0.0,
    "UV": 0,
    "SV": 0,
    "UR": "",
}


def max_dicom_bytes() -> int:
    return getattr(settings, "DICOM_MAX_MB", 64) * 1024 * 1024


@dataclass
class Deidentification:
    """What de-identification did: tags (``(gggg,eeee) Keyword``) per action, no values."""

    removed: set[str] = field(default_factory=set)
    emptied: set[str] = field(default_factory=set)
    replaced: set[str] = field(default_factory=set)
    uids_replaced: set[str] = field(default_factory=set)
    private_removed: set[str] = field(default_factory=set)

    def note(self, bucket: set[str], tag: int) -> None:
        from pydicom.datadict import keyword_for_tag

        keyword = keyword_for_tag(tag) if not (tag >> 16) % 2 else ""
        bucket.add(f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {keyword}" if keyword else ""))

    def audit_details(self) -> dict[str, Any]:
        def listed(values: set[str]) -> list[str]:
            return sorted(values)[:_LISTED]

        return {
            "profile": PROFILE_NAME,
            "removed": listed(self.removed),
            "emptied": listed(self.emptied),
            "replaced_dummy": listed(self.replaced),
            "uids_replaced": listed(self.uids_replaced),
            "private_removed": listed(self.private_removed),
            "counts": {
                "removed": len(self.removed),
                "emptied": len(self.emptied),
                "replaced_dummy": len(self.replaced),
                "uids_replaced": len(self.uids_replaced),
                "private_removed": len(self.private_removed),
            },
        }


def _read(data: bytes):
    """Parse a Part 10 file (meta information first: the transfer syntax is checked before the
    data set is read). AssetRejected for anything that does not parse or decode here."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import get_decoder

    try:
        # The meta information alone (pydicom.dcmread would inflate a deflated data set first).
        head = io.BytesIO(data)
        pydicom.filereader.read_preamble(head, False)
        meta = pydicom.filereader._read_file_meta_info(head)
        syntax = pydicom.uid.UID(str(meta.get("TransferSyntaxUID", "")))
    except (InvalidDicomError, ValueError, KeyError, EOFError, OSError, AttributeError, TypeError):
        raise rejections.dicom_unreadable() from None
    if not syntax:
        raise rejections.dicom_unreadable()
    if syntax == _DEFLATED or not syntax.is_transfer_syntax:
        raise rejections.dicom_unsupported_compression(syntax.name if syntax.is_transfer_syntax else str(syntax)[:64])
    if syntax.is_compressed:
        try:
            available = get_decoder(syntax).is_available
        except (NotImplementedError, ValueError, KeyError):
            available = False
        if not available:
            raise rejections.dicom_unsupported_compression(syntax.name)
    with _damage_as(rejections.dicom_unreadable):
        dataset = pydicom.dcmread(io.BytesIO(data))
        for _element in dataset.iterall():  # every element parsed now, sequences included
            pass
    if "YES" in _code_values(dataset, "BurnedInAnnotation"):
        raise rejections.dicom_burned_in()
    return dataset


def dicom_recognizable() -> rejections.AssetRejected:
    return rejections.AssetRejected("dicom_recognizable_features", DICOM_RECOGNIZABLE)


def dicom_burned_in_unconfirmed(kind: str) -> rejections.AssetRejected:
    return rejections.AssetRejected("dicom_burned_in_unconfirmed", DICOM_BURNED_IN_UNCONFIRMED.format(kind=kind))


def _code_values(dataset, keyword: str) -> list[str]:
    """Every value of a code-string attribute, upper-cased: a multi-valued one ("YES\\NO") is
    read value by value, never as the text of its list."""
    value = dataset.get(keyword, "")
    values = list(value) if hasattr(value, "__iter__") and not isinstance(value, str | bytes) else [value]
    return [str(item or "").strip().upper() for item in values]


def _check_identifiable(dataset) -> None:
    """Refuse what attribute edits cannot de-identify (at upload, before anything is stored):
    a face or other recognizable feature, and an image of a kind that commonly carries burned-in
    identifiers — by Modality or by SOP class — unless the file says it has none
    (``BurnedInAnnotation`` = ``NO``, every value of it)."""
    if "YES" in _code_values(dataset, "RecognizableVisualFeatures"):
        raise dicom_recognizable()
    burned_in = [value for value in _code_values(dataset, "BurnedInAnnotation") if value]
    if burned_in and all(value == "NO" for value in burned_in):
        return
    for modality in _code_values(dataset, "Modality"):
        if modality in BURNED_IN_LIKELY_MODALITIES:
            raise dicom_burned_in_unconfirmed(f"Modality {modality}")
    sop_classes = {str(dataset.get("SOPClassUID", "") or "").strip()}
    sop_classes.add(str(dataset.file_meta.get("MediaStorageSOPClassUID", "") or "").strip())
    for sop_class in sop_classes:
        for prefix, kind in BURNED_IN_LIKELY_SOP_CLASSES.items():
            if sop_class == prefix or sop_class.startswith(prefix + "."):
                raise dicom_burned_in_unconfirmed(kind)


@contextlib.contextmanager
def _damage_as(refusal: Callable[[], Exception]) -> Iterator[None]:
    """What pydicom raises on a damaged file becomes ``refusal()``; the platform's own refusals
    and MemoryError pass through."""
    try:
        yield
    except (rejections.AssetRejected, MemoryError):
        raise
    except Exception:
        raise refusal() from None


def _new_uid(uid: str, key: bytes, mapping: dict[str, str]) -> str:
    if uid not in mapping:
        digest = hmac.new(key, uid.encode("ascii", "replace"), hashlib.sha256).digest()
        mapping[uid] = f"2.25.{int.from_bytes(digest[:16], 'big')}"
    return mapping[uid]


def _dummy(element) -> Any:
    if element.VR in _DUMMIES:
        return _DUMMIES[element.VR]
    if element.VR in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return b"\x00\x00"
    return _DUMMY_TEXT


def _overlay_or_curve(group: int) -> bool:
    return group % 2 == 0 and (0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF)


def _apply_profile(dataset, report: Deidentification, key: bytes, mapping: dict[str, str]) -> None:
    for element in list(dataset):
        tag = int(element.tag)
        group = tag >> 16
        if group % 2:
            del dataset[tag]
            report.note(report.private_removed, tag)
            continue
        if _overlay_or_curve(group):
            del dataset[tag]
            report.note(report.removed, tag)
            continue
        action = BASIC_PROFILE.get(tag)
        if action is None:
            if element.VR == "SQ":
                for item in element.value or ():
                    _apply_profile(item, report, key, mapping)
            continue
        if action.startswith("X"):
            del dataset[tag]
            report.note(report.removed, tag)
        elif action == "Z" or action == "ZD" or (action == "D" and element.VR == "SQ"):
            element.value = [] if element.VR == "SQ" else None
            report.note(report.emptied, tag)
        elif action == "D":
            element.value = _dummy(element)
            report.note(report.replaced, tag)
        elif action == "U":
            if element.VR == "UI" and element.value:
                values = element.value if element.VM > 1 else [element.value]
                replaced = [_new_uid(str(value), key, mapping) for value in values]
                element.value = replaced if element.VM > 1 else replaced[0]
            elif element.VR != "UI":
                element.value = [] if element.VR == "SQ" else None
            report.note(report.uids_replaced, tag)


def dicom_deidentify(data: bytes, *, uid_key: bytes) -> tuple[bytes, Deidentification]:
    """The de-identified Part 10 file, and what was done (see the module's docstring)."""
    dataset = _read(data)
    _check_identifiable(dataset)
    report = Deidentification()
    mapping: dict[str, str] = {}
    with _damage_as(rejections.dicom_unreadable):
        _apply_profile(dataset, report, uid_key, mapping)
        meta = dataset.file_meta
        for tag in [int(element.tag) for element in meta if int(element.tag) not in _META_KEPT]:
            del meta[tag]
            report.note(report.private_removed if (tag >> 16) % 2 else report.removed, tag)
        if "SOPInstanceUID" in dataset:
            meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
        elif "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = _new_uid(str(meta.MediaStorageSOPInstanceUID), uid_key, mapping)
        report.note(report.uids_replaced, 0x00020003)
        dataset.PatientIdentityRemoved = "YES"
        dataset.DeidentificationMethod = PROFILE_NAME[:64]
        dataset.preamble = b"\x00" * 128
        output = io.BytesIO()
        dataset.save_as(output, enforce_file_format=True)
    return output.getvalue(), report


def department_uid_key(department) -> bytes:
    """The key new UIDs are derived with: one per department, from the server's secret."""
    return hmac.new(settings.SECRET_KEY.encode(), f"dicom-uids:{department.pk}".encode(), hashlib.sha256).digest()


def dicom_deidentify_staged(staged, *, department):
    """De-identify a staged (encrypted) upload in memory and stage the result again: returns
    the new ``StagedBlob`` (the de-identified bytes: the asset's ``sha256``) and the report.
    The original staged blob is discarded once the new one is staged."""
    from assets.storage import stage_stream

    limit = max_dicom_bytes()
    if staged.size > limit:
        raise rejections.too_large(limit)
    with staged.open_reader() as reader:
        data = reader.read(limit + 1)
    clean, report = dicom_deidentify(data, uid_key=department_uid_key(department))
    del data
    restaged = stage_stream(io.BytesIO(clean), max_bytes=max(limit, len(clean)))
    staged.discard()
    return restaged, report


# --- decoding and rendering -------------------------------------------------------------------


def _frame_count(dataset) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        raise rejections.dicom_unreadable() from None


def _check_geometry(dataset) -> tuple[int, int, int]:
    if "PixelData" not in dataset:
        raise rejections.dicom_unreadable()
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
    except (AttributeError, TypeError, ValueError):
        raise rejections.dicom_unreadable() from None
    if rows <= 0 or columns <= 0:
        raise rejections.dicom_unreadable()
    frames = _frame_count(dataset)
    if frames > settings.MAX_PDF_PAGES:
        raise rejections.dicom_too_many_frames(frames, settings.MAX_PDF_PAGES)
    if rows * columns * frames > settings.MAX_IMAGE_PIXELS:
        raise rejections.too_many_pixels(rows * columns * frames, settings.MAX_IMAGE_PIXELS)
    return rows, columns, frames


def _window_range(dataset) -> tuple[float, float] | None:
    """The output range of ``apply_voi_lut`` for this data set (PS3.3 C.11.2), or None when the
    file has neither a VOI LUT nor a window."""
    voi = dataset.get("VOILUTSequence")
    if voi:
        return 0.0, float(2 ** int(voi[0].LUTDescriptor[2]) - 1)
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return None
    bits = int(dataset.BitsStored)
    if dataset.get("ModalityLUTSequence"):
        low, high = 0.0, float(2 ** int(dataset.ModalityLUTSequence[0].LUTDescriptor[2]) - 1)
    elif int(dataset.get("PixelRepresentation", 0)) == 0:
        low, high = 0.0, float(2**bits - 1)
    else:
        low, high = float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    slope, intercept = dataset.get("RescaleSlope"), dataset.get("RescaleIntercept")
    if slope is not None and intercept is not None:
        low, high = low * float(slope) + float(intercept), high * float(slope) + float(intercept)
    return low, high


def render_frame(dataset, frame: np.ndarray) -> Image.Image:
    """One frame as the model sees it (8-bit grey or RGB)."""
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(dataset.get("PhotometricInterpretation", "")).strip().upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2"):
        values = apply_modality_lut(frame, dataset)
        window = _window_range(dataset)
        if window is not None:
            values = apply_voi_lut(values, dataset, index=0, prefer_lut=True)
            low, high = window
        else:
            values = values.astype("float64")
            low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        grey = np.clip(np.rint((np.asarray(values, dtype="float64") - low) * scale), 0, 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            grey = 255 - grey
        return Image.fromarray(grey, mode="L").convert("RGB")
    if photometric == "PALETTE COLOR":
        frame = apply_color_lut(frame, dataset)
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise rejections.dicom_unreadable()
    if frame.dtype != np.uint8:
        top = float(frame.max()) or 1.0
        frame = np.clip(np.rint(frame.astype("float64") * (255.0 / max(top, 255.0))), 0, 255).astype(np.uint8)
    return Image.fromarray(frame, mode="RGB")


def _frames_from(dataset, index: int):
    """Frame ``index`` (0-based) decoded alone; PageUnreadable when it does not decode."""
    dataset.pixel_array_options(index=index if _frame_count(dataset) > 1 else None)
    with _damage_as(lambda: content.PageUnreadable(index + 1)):
        yield dataset.pixel_array


def _frames(dataset, count: int):
    for index in range(count):
        yield from _frames_from(dataset, index)


def _load(reader: BinaryIO):
    reader.seek(0)
    limit = max_dicom_bytes()
    data = reader.read(limit + 1)
    if len(data) > limit:
        raise rejections.too_large(limit)
    return _read(data)


def dicom_inspect(reader: BinaryIO, size: int) -> content.ContentInfo:
    """The upload's complete check of a (de-identified) file: every frame decoded and rendered."""
    dataset = _load(reader)
    rows, columns, frames = _check_geometry(dataset)
    with _damage_as(rejections.dicom_unreadable):  # a frame's PageUnreadable included
        for frame in _frames(dataset, frames):
            render_frame(dataset, frame).close()
    return content.ContentInfo(kind=content.DICOM, width=columns, height=rows, page_count=frames)


def dicom_page_images(reader: BinaryIO, *, max_pages: int, max_side: int) -> list[Image.Image]:
    """The first ``max_pages`` frames, rendered, each at most ``max_side`` on its longer side."""
    return dicom_pages_at(reader, range(1, max_pages + 1), max_side=max_side, clip=True)


def dicom_pages_at(reader: BinaryIO, numbers, *, max_side: int, clip: bool = False) -> list[Image.Image]:
    """The frames ``numbers`` (1-based, in the order given) decoded and rendered, only those. A
    number beyond the file raises PageUnreadable (left out with ``clip``)."""
    try:
        dataset = _load(reader)
        _rows, _columns, frames = _check_geometry(dataset)
    except rejections.AssetRejected:
        raise content.PageUnreadable(1) from None
    images = []
    for number in numbers:
        if not 1 <= number <= frames:
            if clip:
                continue
            raise content.PageUnreadable(number)
        (frame,) = list(_frames_from(dataset, number - 1))
        try:
            image = render_frame(dataset, frame)
        except Exception as error:
            if isinstance(error, MemoryError):
                raise
            raise content.PageUnreadable(number) from None
        image.thumbnail((max_side, max_side))
        images.append(image)
    return images


def dicom_text_extractor(reader: BinaryIO, *, asset, limits) -> Iterator[PageText]:
    """The text-layer job's extractor (``text_layer.TEXT_EXTRACTORS``): each frame rendered as
    the model sees it and OCR'd within the job's limits (a secondary-capture scan of a paper
    form has text; a CT slice comes out blank and costs no OCR)."""
    from assets.documents.text_layer import TextLayerRefused

    try:
        dataset = _load(reader)
        _rows, _columns, frames = _check_geometry(dataset)
    except rejections.AssetRejected:
        raise TextLayerRefused("unreadable") from None
    if frames > limits.max_pages:
        raise TextLayerRefused("too_many_pages", pages=frames, limit=limits.max_pages)
    for index in range(frames):
        number = index + 1
        try:
            (frame,) = list(_frames_from(dataset, index))
            image = render_frame(dataset, frame)
        except Exception as error:
            if isinstance(error, MemoryError):
                raise
            yield PageText(number=number, usable=False)
            continue
        image.thumbnail((limits.max_side, limits.max_side))
        lines = limits.ocr(image, page=number)
        yield PageText(number, lines, TextSource.OCR if lines else TextSource.NONE, image.width, image.height)
