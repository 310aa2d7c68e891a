"""Name tables for the synthetic population: Welsh surname frequencies, Welsh and English given
names with their variants, and the register-side spellings a clerk might use.

Two sets of frequencies (``population.FamilyConfig.names``). The default, 2020: the five commonest
Welsh surnames at their March 2020 counts (``SURNAMES_2020``, Jones 5.4% of Wales), the rest of
``WELSH_SURNAMES`` scaled down to match, then English, Irish, Scottish, South Asian and Eastern
European surnames and a tail of about 9,000 rare ones; given names from ``GIVEN_NAMES`` then
thousands of invented ones (``given_name_tail``), as spread as ONS baby-name counts. The first
tables, 1830s: ``WELSH_SURNAMES`` as they are (Jones about 14%, its share in 1813-37 in John and
Sheila Rowlands' "The Surnames of Wales"), 600 other surnames and ``GIVEN_NAMES`` alone.
"""

from __future__ import annotations

from typing import Final

# (surname, per cent of children); together 72.5%, the rest goes to the other names.
WELSH_SURNAMES: Final[tuple[tuple[str, float], ...]] = (
    ("Jones", 14.0), ("Davies", 7.0), ("Williams", 6.5), ("Evans", 4.8), ("Thomas", 4.6),
    ("Roberts", 3.5), ("Hughes", 3.0), ("Lewis", 2.8), ("Morgan", 2.4), ("Griffiths", 2.1),
    ("Edwards", 1.9), ("Owen", 1.6), ("Rees", 1.5), ("Jenkins", 1.4), ("Price", 1.3),
    ("Phillips", 1.2), ("James", 1.2), ("Parry", 1.0), ("Lloyd", 0.9), ("Powell", 0.8),
    ("Harris", 0.8), ("Morris", 0.8), ("Pritchard", 0.5), ("Watkins", 0.5), ("Rowlands", 0.4),
    ("Howells", 0.4), ("Pugh", 0.4), ("Bowen", 0.4), ("Vaughan", 0.3), ("Llewellyn", 0.3),
    ("Probert", 0.2), ("Prosser", 0.2), ("Gwynne", 0.15), ("ap Rhys", 0.05), ("ab Owain", 0.05),
    ("ap Dafydd", 0.04), ("Bevan", 0.3), ("Beynon", 0.2), ("Gruffydd", 0.1), ("Meredith", 0.3),
)

OTHER_SURNAMES: Final[tuple[str, ...]] = (
    "Smith", "Taylor", "Brown", "Wilson", "Johnson", "Walker", "Wright", "Robinson", "Thompson",
    "White", "Green", "Hall", "Wood", "Clarke", "Jackson", "Turner", "Hill", "Cooper", "Ward",
    "Baker", "King", "Harrison", "Morrison", "Murphy", "Kelly", "O'Brien", "O'Sullivan",
    "McDonald", "MacLeod", "Campbell", "Stewart", "Khan", "Ahmed", "Hussain", "Begum", "Ali",
    "Patel", "Singh", "Rahman", "Chowdhury", "Uddin", "Islam", "Nowak", "Kowalski", "Przybylski",
    "Wiśniewski", "Wójcik", "Kowalczyk", "Nguyen", "Tran", "Chen", "Wang", "Li", "Okafor",
    "Mensah", "Osei", "Abdi", "Mohamed", "Yusuf", "Ibrahim", "Hassan", "Silva", "Santos",
    "Ferreira", "Popescu", "Ionescu", "Horvath", "Novak", "Kaur", "Gill", "Sandhu", "Bailey",
    "Collins", "Bennett", "Cox", "Mitchell", "Carter", "Parker", "Shaw", "Lloyd-Jones",
    "Stephens", "Pearce", "Hopkins", "Matthews", "Fisher", "Marsh", "Dunn", "Holmes",
    "Sheppard", "Coleman", "Fletcher", "Hayward", "Chambers", "Fox", "Knight", "Barnes",
    "Dąbrowski", "Zieliński", "Szymański", "Lewandowski", "Müller", "Schmidt", "Rossi", "Russo",
)

# Shares in Wales in March 2020, per cent (counts: Jones 170,633, Davies 111,559, Williams 110,404,
# Evans 72,243, Thomas 71,040, of about 3.17 million people; as summarised in "What's in a name?",
# bespoketoursofnorthwales.co.uk, 2020). Children's names are a little less Welsh than everyone's,
# so these overstate namesakes slightly, the safe side for calibrating the cross-LA check.
SURNAMES_2020: Final[dict[str, float]] = {
    "Jones": 5.4, "Davies": 3.5, "Williams": 3.5, "Evans": 2.3, "Thomas": 2.2,
}

# Syllables for a long tail of rare surnames, so that most children outside the common names
# have names shared by few others (as in a real population).
TAIL_PREFIXES: Final = ("Ash", "Bran", "Carr", "Dal", "Elm", "Fair", "Gar", "Hart", "Ire",
                        "Kel", "Lan", "Mar", "Nor", "Pen", "Ray", "Stan", "Tal", "Wes", "Yar",
                        "Bry", "Cwm", "Gwil", "Llan", "Tre", "Aber", "Caer", "Glyn", "Maes")
TAIL_SUFFIXES: Final = ("ford", "ley", "ton", "wood", "field", "more", "well", "den", "by",
                        "ham", "son", "ridge", "brook", "wyn", "dre", "ith", "an", "ock")
# 2020 names: a middle syllable makes the tail 9,000 names long (prefix + middle + suffix).
TAIL_MIDDLES: Final = ("", "a", "e", "i", "o", "er", "in", "en", "ar", "el", "on", "ing", "wen", "mor",
                       "hal", "bur", "ding", "ley")

# 2020 names: invented given names (start + middle + ending), so that, as in ONS counts (28,222
# boys' and 35,475 girls' names registered in England and Wales in 2017), most names are rare.
GIVEN_STARTS: Final = ("Al", "Bri", "Ca", "Da", "El", "Fa", "Ga", "Ha", "Is", "Ja", "Ka", "La", "Ma", "Na",
                       "Ol", "Pe", "Ra", "Sa", "Ta", "Wy", "Ze", "Ari", "Bel", "Cor", "Del", "Eve", "Fin",
                       "Gil", "Hol", "Jul")
GIVEN_MIDDLES: Final = ("", "l", "r", "n", "v", "th", "d", "m")
GIVEN_ENDINGS: Final[dict[str, tuple[str, ...]]] = {
    "F": ("ia", "ie", "ah", "ine", "ella", "ette", "ica", "a", "wen", "ys", "iel", "ina", "anna", "isa", "ly"),
    "M": ("an", "en", "on", "yn", "ey", "ian", "el", "is", "ro", "lyn", "ton", "ith", "o", "er", "us"),
}


def given_name_tail(sex: str) -> tuple[str, ...]:
    """The invented given names of one sex (``"F"`` or ``"M"``), 3,600 of them."""
    return tuple(a + m + e for a in GIVEN_STARTS for m in GIVEN_MIDDLES for e in GIVEN_ENDINGS[sex])

# Given names: (canonical spelling on GP record, sex, variants a register might hold instead).
# Variants are the Welsh/English equivalents, anglicised spellings and nicknames.
GIVEN_NAMES: Final[tuple[tuple[str, str, tuple[str, ...]], ...]] = (
    ("Dafydd", "M", ("David", "Dai", "Dave", "Dewi")),
    ("David", "M", ("Dafydd", "Dave", "Dai")),
    ("Siôn", "M", ("Sion", "John", "Shôn")),
    ("Huw", "M", ("Hugh", "Hughie")),
    ("Ioan", "M", ("John", "Ifan")),
    ("Ifan", "M", ("Evan", "Ieuan")),
    ("Tomos", "M", ("Thomas", "Tom", "Twm")),
    ("Thomas", "M", ("Tom", "Tommy", "Tomos")),
    ("Gruffydd", "M", ("Griffith", "Gruff", "Gruffudd")),
    ("Rhys", "M", ("Reece", "Rees", "Rhydian")),
    ("Llŷr", "M", ("Llyr", "Lear")),
    ("Gethin", "M", ("Geth",)),
    ("Osian", "M", ("Osh",)),
    ("Cai", "M", ("Kai", "Caio")),
    ("Iwan", "M", ("Ivan", "Ewan")),
    ("Aled", "M", ("Al",)),
    ("Emyr", "M", ("Emrys",)),
    ("Gwilym", "M", ("William", "Will", "Wil")),
    ("William", "M", ("Will", "Bill", "Billy", "Gwilym", "Liam")),
    ("James", "M", ("Jim", "Jamie", "Jimmy", "Iago")),
    ("Oliver", "M", ("Ollie", "Olly")),
    ("Jack", "M", ("Jac", "Jackie")),
    ("Harry", "M", ("Harri", "Henry")),
    ("George", "M", ("Siôr", "Georgie")),
    ("Noah", "M", ()),
    ("Charlie", "M", ("Charles", "Siarl")),
    ("Alexander", "M", ("Alex", "Alexandr", "Sandy")),
    ("Joshua", "M", ("Josh",)),
    ("Benjamin", "M", ("Ben", "Benji")),
    ("Samuel", "M", ("Sam", "Sammy")),
    ("Mohammed", "M", ("Muhammad", "Mohamed", "Mohammad")),
    ("Jakub", "M", ("Jacob", "Kuba")),
    ("Ethan", "M", ()),
    ("Leo", "M", ("Leon",)),
    ("Freddie", "M", ("Frederick", "Fred")),
    ("Arthur", "M", ("Art", "Arthwr")),
    ("Michael", "M", ("Mike", "Mikey", "Mihangel")),
    ("Daniel", "M", ("Dan", "Danny")),
    ("Matthew", "M", ("Matt", "Mathew")),
    ("Siân", "F", ("Sian", "Jane", "Shân")),
    ("Hâf", "F", ("Haf", "Summer")),
    ("Cerys", "F", ("Ceri", "Kerys")),
    ("Ffion", "F", ("Fion", "Fiona")),
    ("Fflur", "F", ("Flur", "Flora")),
    ("Carys", "F", ("Caris", "Cari")),
    ("Elin", "F", ("Ellen", "Eleanor", "Ellie")),
    ("Nia", "F", ("Niamh",)),
    ("Catrin", "F", ("Catherine", "Cat", "Katherine", "Kate")),
    ("Lowri", "F", ("Laura", "Lori")),
    ("Mared", "F", ("Margaret", "Maggie")),
    ("Gwenllian", "F", ("Gwen", "Gwenno")),
    ("Seren", "F", ("Star",)),
    ("Alys", "F", ("Alice", "Ally")),
    ("Efa", "F", ("Eva", "Eve")),
    ("Mali", "F", ("Molly", "Mary")),
    ("Megan", "F", ("Meg", "Meghan")),
    ("Eluned", "F", ("Luned", "Lynette")),
    ("Angharad", "F", ("Anga",)),
    ("Olivia", "F", ("Liv", "Livvy", "Olive")),
    ("Amelia", "F", ("Amy", "Millie", "Emilia")),
    ("Isla", "F", ("Islay",)),
    ("Ava", "F", ("Eva",)),
    ("Mia", "F", ("Maria",)),
    ("Grace", "F", ("Gracie",)),
    ("Charlotte", "F", ("Charlie", "Lottie")),
    ("Elizabeth", "F", ("Beth", "Liz", "Lizzie", "Eliza", "Bethan")),
    ("Sophie", "F", ("Sophia", "Soph")),
    ("Emily", "F", ("Em", "Emilia")),
    ("Jessica", "F", ("Jess", "Jessie")),
    ("Katherine", "F", ("Kate", "Katie", "Kath", "Catrin")),
    ("Rebecca", "F", ("Becky", "Becca")),
    ("Hannah", "F", ("Hana", "Annie")),
    ("Zofia", "F", ("Sophia", "Zosia")),
    ("Aisha", "F", ("Ayesha", "Aishah")),
    ("Fatima", "F", ("Fatimah",)),
    ("Poppy", "F", ()),
    ("Freya", "F", ("Freja",)),
    ("Ruby", "F", ()),
)

STREETS: Final = (
    "Heol y Parc", "Heol Fawr", "Ffordd y Môr", "Ffordd Glyndŵr", "Stryd Fawr", "Lôn Las",
    "Maes y Coed", "Cae Glas", "Bryn Awel", "Tan y Bryn", "Pen y Bont Road", "High Street",
    "Church Street", "Station Road", "Park Road", "Mill Lane", "Victoria Road", "Queen Street",
    "King Street", "Chapel Street", "New Road", "Castle Street", "Bridge Street", "Hill Street",
    "Oak Avenue", "Beech Close", "Elm Grove", "Meadow Way", "School Lane", "Marine Terrace",
    "St David's Road", "St Mary's Street", "Windsor Road", "Glan yr Afon", "Heol Dewi Sant",
)

POSTCODE_LETTERS: Final = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in the inward code's unit
