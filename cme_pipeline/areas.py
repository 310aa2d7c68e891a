"""The 22 principal areas of Wales (ONS codes), the local authorities this pipeline serves."""

from __future__ import annotations

from typing import Final

from cme_pipeline.errors import UsageError

LA_NAMES: Final[dict[str, str]] = {
    "W06000001": "Isle of Anglesey",
    "W06000002": "Gwynedd",
    "W06000003": "Conwy",
    "W06000004": "Denbighshire",
    "W06000005": "Flintshire",
    "W06000006": "Wrexham",
    "W06000008": "Ceredigion",
    "W06000009": "Pembrokeshire",
    "W06000010": "Carmarthenshire",
    "W06000011": "Swansea",
    "W06000012": "Neath Port Talbot",
    "W06000013": "Bridgend",
    "W06000014": "Vale of Glamorgan",
    "W06000015": "Cardiff",
    "W06000016": "Rhondda Cynon Taf",
    "W06000018": "Caerphilly",
    "W06000019": "Blaenau Gwent",
    "W06000020": "Torfaen",
    "W06000021": "Monmouthshire",
    "W06000022": "Newport",
    "W06000023": "Powys",
    "W06000024": "Merthyr Tydfil",
}
LA_CODES: Final[tuple[str, ...]] = tuple(LA_NAMES)


def parse_la_codes(spec: str) -> list[str]:
    """Parse ``CODE[,CODE..]`` or ``all`` into a list of known LA codes, in order.

    Args:
        spec: the command-line value.
    """
    if spec.strip().lower() == "all":
        return list(LA_CODES)
    codes: list[str] = []
    for i, raw in enumerate(spec.split(","), start=1):
        code = raw.strip().upper()
        if code not in LA_NAMES:
            raise UsageError(
                f"--la item {i} is not the ONS code of a Welsh principal area (W06000001..W06000024)"
            )
        if code not in codes:
            codes.append(code)
    return codes
