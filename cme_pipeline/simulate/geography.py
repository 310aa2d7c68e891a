"""Where children live: realistic sizes, postcode districts and towns for each Welsh LA.

Sizes are children of compulsory school age on GP lists, rounded from ONS mid-year estimates of
5-16 year olds; they sum to about 440,000 (Cardiff about 57,000).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Area:
    """Simulation facts about one LA."""

    children: int
    districts: tuple[str, ...]
    towns: tuple[str, ...]
    gp_prefix: str  # health board practice-code prefix


AREAS: Final[dict[str, Area]] = {
    "W06000001": Area(9_300, ("LL61", "LL65", "LL77", "LL68", "LL59"), ("Llangefni", "Holyhead", "Amlwch", "Menai Bridge"), "W94"),
    "W06000002": Area(15_900, ("LL55", "LL57", "LL53", "LL40", "LL23"), ("Caernarfon", "Bangor", "Pwllheli", "Dolgellau", "Bala"), "W94"),
    "W06000003": Area(14_200, ("LL28", "LL29", "LL30", "LL32", "LL22"), ("Conwy", "Colwyn Bay", "Llandudno", "Abergele"), "W91"),
    "W06000004": Area(12_900, ("LL15", "LL16", "LL18", "LL19"), ("Ruthin", "Denbigh", "Rhyl", "Prestatyn"), "W91"),
    "W06000005": Area(22_400, ("CH5", "CH6", "CH7", "CH8"), ("Flint", "Mold", "Holywell", "Connah's Quay", "Buckley"), "W91"),
    "W06000006": Area(19_800, ("LL11", "LL12", "LL13", "LL14"), ("Wrexham", "Gresford", "Rhosllanerchrugog", "Chirk"), "W91"),
    "W06000008": Area(8_100, ("SY23", "SY24", "SA43", "SA46", "SA48"), ("Aberystwyth", "Cardigan", "Aberaeron", "Lampeter"), "W93"),
    "W06000009": Area(15_800, ("SA61", "SA62", "SA71", "SA72", "SA73"), ("Haverfordwest", "Pembroke", "Milford Haven", "Tenby"), "W93"),
    "W06000010": Area(26_000, ("SA14", "SA15", "SA18", "SA31", "SA33"), ("Carmarthen", "Llanelli", "Ammanford", "Whitland"), "W93"),
    "W06000011": Area(34_600, ("SA1", "SA2", "SA4", "SA5", "SA6", "SA7"), ("Swansea", "Gorseinon", "Morriston", "Mumbles"), "W98"),
    "W06000012": Area(18_900, ("SA10", "SA11", "SA12", "SA13"), ("Neath", "Port Talbot", "Pontardawe", "Glynneath"), "W98"),
    "W06000013": Area(20_400, ("CF31", "CF32", "CF33", "CF34", "CF35"), ("Bridgend", "Porthcawl", "Maesteg", "Pencoed"), "W97"),
    "W06000014": Area(19_900, ("CF61", "CF62", "CF63", "CF64", "CF71"), ("Barry", "Penarth", "Llantwit Major", "Cowbridge"), "W97"),
    "W06000015": Area(57_000, ("CF3", "CF5", "CF10", "CF11", "CF14", "CF23", "CF24"), ("Cardiff", "Llandaff", "Canton", "Splott", "Llanishen"), "W97"),
    "W06000016": Area(35_600, ("CF37", "CF38", "CF39", "CF40", "CF44", "CF45"), ("Pontypridd", "Aberdare", "Tonypandy", "Porth", "Llantrisant"), "W95"),
    "W06000018": Area(25_500, ("CF81", "CF82", "CF83", "NP11", "NP12"), ("Caerphilly", "Blackwood", "Ystrad Mynach", "Risca", "Bargoed"), "W95"),
    "W06000019": Area(9_700, ("NP13", "NP22", "NP23"), ("Ebbw Vale", "Tredegar", "Abertillery", "Brynmawr"), "W95"),
    "W06000020": Area(13_300, ("NP4", "NP44"), ("Pontypool", "Cwmbran", "Blaenavon"), "W95"),
    "W06000021": Area(11_200, ("NP7", "NP15", "NP16", "NP25", "NP26"), ("Abergavenny", "Monmouth", "Chepstow", "Caldicot", "Usk"), "W95"),
    "W06000022": Area(25_000, ("NP10", "NP18", "NP19", "NP20"), ("Newport", "Caerleon", "Bettws", "Rogerstone"), "W95"),
    "W06000023": Area(15_800, ("LD1", "LD3", "SY16", "SY21", "NP8"), ("Newtown", "Welshpool", "Brecon", "Llandrindod Wells", "Crickhowell"), "W92"),
    "W06000024": Area(8_700, ("CF46", "CF47", "CF48"), ("Merthyr Tydfil", "Treharris", "Dowlais", "Troedyrhiw"), "W95"),
}

# A few postcodes outside Wales: children registered with a Welsh GP but living or schooled in
# England, and malformed/foreign ones the matcher must tolerate.
ENGLISH_DISTRICTS: Final = ("HR1", "GL16", "SY1", "CH1", "BS1", "NP25")
