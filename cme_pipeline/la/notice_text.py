"""The privacy notice's wording, in English and Welsh: the same facts, sentence for sentence.

Kept apart from the code that fills it in so that the DPO and a Welsh translator can review it
as text. Placeholders (``{retention_days}``) are filled from the settings and the LA's
configuration by ``la/notice.py``; both languages must use the same ones (a test checks this),
so a figure cannot be stated in one language and forgotten in the other.
"""

from __future__ import annotations

from typing import Final, Literal

Language = Literal["en", "cy"]
LANGUAGES: Final[tuple[Language, ...]] = ("en", "cy")

# Welsh names of the 22 principal areas (ONS code -> name), as the councils themselves use them.
LA_NAMES_CY: Final[dict[str, str]] = {
    "W06000001": "Ynys Môn",
    "W06000002": "Gwynedd",
    "W06000003": "Conwy",
    "W06000004": "Sir Ddinbych",
    "W06000005": "Sir y Fflint",
    "W06000006": "Wrecsam",
    "W06000008": "Ceredigion",
    "W06000009": "Sir Benfro",
    "W06000010": "Sir Gaerfyrddin",
    "W06000011": "Abertawe",
    "W06000012": "Castell-nedd Port Talbot",
    "W06000013": "Pen-y-bont ar Ogwr",
    "W06000014": "Bro Morgannwg",
    "W06000015": "Caerdydd",
    "W06000016": "Rhondda Cynon Taf",
    "W06000018": "Caerffili",
    "W06000019": "Blaenau Gwent",
    "W06000020": "Torfaen",
    "W06000021": "Sir Fynwy",
    "W06000022": "Casnewydd",
    "W06000023": "Powys",
    "W06000024": "Merthyr Tudful",
}

# What each health extract field tells the reader; fields sharing a description are listed once.
# A field missing here stops the notice (la/notice.py): it must never understate what we receive.
FIELD_CATEGORIES: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "nhs_number": "NHS number",
        **dict.fromkeys(("forename", "middle_names", "surname", "former_surname"),
                        "Names: forename, middle names, surname and any former surname"),
        "dob": "Date of birth",
        "sex": "Sex",
        **dict.fromkeys(("address_line1", "address_line2", "address_line3", "address_line4"), "Address"),
        "postcode": "Postcode",
        "gp_practice_code": "The GP practice the child is registered with (its code)",
        "registration_date": "Date of registration with the GP practice",
        "restricted": "Whether the NHS marks the record as sensitive (restricted): then no address, postcode or "
                      "GP practice is received",
        "previous_postcode": "The postcode of the previous address, if the child moved in the last twelve months "
                             "(to look for them on another Welsh council's registers)",
    },
    "cy": {
        "nhs_number": "Rhif GIG",
        **dict.fromkeys(("forename", "middle_names", "surname", "former_surname"),
                        "Enwau: enw cyntaf, enwau canol, cyfenw ac unrhyw gyfenw blaenorol"),
        "dob": "Dyddiad geni",
        "sex": "Rhyw",
        **dict.fromkeys(("address_line1", "address_line2", "address_line3", "address_line4"), "Cyfeiriad"),
        "postcode": "Cod post",
        "gp_practice_code": "Y practis meddyg teulu y mae'r plentyn wedi'i gofrestru ag ef (ei god)",
        "registration_date": "Dyddiad cofrestru gyda'r practis meddyg teulu",
        "restricted": "A yw'r GIG yn nodi bod y cofnod yn sensitif (cyfyngedig): os felly, ni dderbynnir "
                      "cyfeiriad, cod post na phractis meddyg teulu",
        "previous_postcode": "Cod post y cyfeiriad blaenorol, os symudodd y plentyn yn ystod y deuddeg mis "
                             "diwethaf (i chwilio amdano ar gofrestrau cyngor arall yng Nghymru)",
    },
}

# The education registers matched against (schemas.REGISTER_SOURCES), as a family would name them.
REGISTER_NAMES: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "school_census": "The school census (PLASC): maintained and independent schools",
        "eotas": "Education other than at school (EOTAS)",
        "ehe": "The elective home education register",
        "cme": "The children missing education register",
    },
    "cy": {
        "school_census": "Y cyfrifiad ysgolion (CYBLD): ysgolion a gynhelir ac ysgolion annibynnol",
        "eotas": "Addysg heblaw yn yr ysgol",
        "ehe": "Y gofrestr addysg ddewisol yn y cartref",
        "cme": "Y gofrestr plant sy'n colli addysg",
    },
}

# The labels in front of each configured period ("**label:** N days"): the tests read the figure
# after each label and compare it with the setting, so a period cannot drift from the code.
DAYS_LABELS: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "retention_days": "Children on no education register",
        "review_days": "Possible matches waiting for an officer's check",
        "quarantine_days": "Deliveries from the NHS that fail our checks",
    },
    "cy": {
        "retention_days": "Plant nad ydynt ar unrhyw gofrestr addysg",
        "review_days": "Cyfatebiaethau posibl sy'n aros i swyddog eu gwirio",
        "quarantine_days": "Ffeiliau gan y GIG a fethodd ein gwiriadau",
    },
}
DAYS_UNIT: Final[dict[Language, str]] = {"en": "days", "cy": "diwrnod"}  # Welsh: singular after a numeral

WORDING: Final[dict[Language, dict[str, str]]] = {
    "en": {
        "title": "Privacy notice: finding children missing education",
        "default_controller": "{area} Local Authority",
        "issued": "Issued: {issued}",
        "lead": "{controller} (\"we\") uses information from NHS GP registration records to find children "
                "of compulsory school age in the {area} area who may be missing education. This notice "
                "tells you what we receive, why, who sees it, how long we keep it and what your rights are, "
                "as Articles 13 and 14 of the UK General Data Protection Regulation (UK GDPR) require. We do "
                "not collect this information from you or your child: it comes to us from the NHS, which is "
                "why Article 14 applies.",
        "h_controller": "Who we are (data controller)",
        "controller": "{controller} is the data controller for this information.",
        "l_contact": "Contact",
        "l_cme_officer": "Children Missing Education team",
        "h_dpo": "Our Data Protection Officer",
        "l_name": "Name",
        "l_email": "Email",
        "l_address": "Address",
        "dpo": "Contact our Data Protection Officer with any question about this notice, or to exercise "
               "your rights.",
        "h_purpose": "Why we use this information",
        "purpose": "Local authorities must make arrangements to identify children of compulsory school age "
                   "in their area who are neither registered at a school nor receiving suitable education "
                   "otherwise (section 436A of the Education Act 1996). We compare the NHS list of children "
                   "registered with a GP practice in the {area} area with our education registers:",
        "purpose_outcome": "Nothing more is needed for a child who is on one of our registers, and their "
                           "information is deleted. A child on none of them may be missing education, and a "
                           "Children Missing Education officer will make enquiries.",
        "h_legal": "Our legal basis",
        "legal_gdpr": "UK GDPR Article 6(1)(e) (public task): the processing is necessary for the performance "
                      "of a task carried out in the public interest or in the exercise of official authority "
                      "vested in us.",
        "legal_436a": "Section 436A of the Education Act 1996: our duty to make arrangements to identify "
                      "children in our area who are not receiving a suitable education.",
        "legal_regulations": "The Children Missing Education Database (Wales) Regulations.",
        "h_source": "Where the information comes from",
        "source": "NHS Wales Shared Services Partnership sends it to us, taken from GP registration records. "
                  "It arrives encrypted and signed, and we check it before we use it.",
        "h_categories": "What information we receive",
        "categories": "For each child of compulsory school age registered with a GP practice in the area, "
                      "the NHS sends us:",
        "categories_not": "We receive no clinical information (nothing about health conditions or treatment) "
                          "and nothing about parents or carers.",
        "h_recipients": "Who sees the information",
        "recipients_officers": "Children Missing Education officers see the information of the children kept "
                               "for follow-up: children on no register, and the possible matches they check.",
        "recipients_dpo": "Our Data Protection Officer and auditors see counts only (how many children were "
                          "received, matched, deleted and kept), never the details of any child.",
        "recipients_none": "We do not share the information with anyone outside the authority, and it is not "
                           "transferred outside the UK.",
        "h_matching": "How we compare records, and automated decisions",
        "matching": "A computer compares each child's details with our registers. When the comparison is "
                    "certain enough, the child counts as found and their information is deleted; when it "
                    "is uncertain, an officer checks it (a \"possible match\"). No decision with a legal or "
                    "similarly significant effect on your child is made by automated means alone: an officer "
                    "looks into every child not found on a register. We compare only with registers no more "
                    "than {register_max_days} days old, so that a child who has recently joined a school is "
                    "not wrongly treated as missing education.",
        "h_retention": "How long we keep the information",
        "retention": "Everything we keep is encrypted. How long depends on what the comparison found:",
        "l_matched": "Children found on an education register",
        "matched": "deleted at the end of the matching run that finds them. We delete by destroying the "
                   "encryption key, so no copy of the information, including in backups, can be read again. "
                   "A signed deletion certificate records how many children's records were deleted; it "
                   "contains no names or other details of any child.",
        "retention_days": "{retention_days} days from the run that found them, for a Children Missing "
                          "Education officer's enquiries; then the information is deleted in the same way.",
        "review_days": "{review_days} days at most. If the officer confirms the match, the information is "
                       "deleted; if not, it is kept as for a child on no register, for {retention_days} "
                       "days from the decision. If no decision is made by then, the information is deleted.",
        "quarantine_days": "{quarantine_days} days, still encrypted and not used, so that we and the NHS can "
                           "find out what went wrong and send it again; then the key is destroyed and the "
                           "file erased.",
        "h_rights": "Your rights",
        "rights": "You have these rights, for yourself or on behalf of your child:",
        "l_access": "Access",
        "access": "ask for a copy of the information we hold about your child.",
        "l_rectification": "Rectification",
        "rectification": "ask us to correct information that is wrong.",
        "l_erasure": "Erasure",
        "erasure": "ask us to delete the information, where this right applies. Because we use it for a "
                   "public task, it does not apply while we still need the information for that task; we "
                   "delete it automatically at the times set out above.",
        "l_restriction": "Restriction",
        "restriction": "ask us to limit how we use the information.",
        "l_objection": "Objection",
        "objection": "object to our use of the information, on grounds relating to your particular situation.",
        "l_complaint": "Complaint",
        "complaint": "complain to the Information Commissioner's Office (ico.org.uk, 0303 123 1113).",
        "exercise": "To exercise any of these rights, contact our Data Protection Officer, {dpo_name}, by "
                    "email at {dpo_email} or by post at {dpo_address}. Once a matching run has ended we hold "
                    "nothing about a child found on an education register, so there is then nothing to give "
                    "or correct.",
        "h_complaints": "Complaints",
        "complaints": "If you are unhappy with how we have used the information, please contact our Data "
                      "Protection Officer first. You can also complain to the Information Commissioner's "
                      "Office (ICO), the UK's data protection regulator: ico.org.uk, telephone 0303 123 1113.",
    },
    "cy": {
        "title": "Hysbysiad preifatrwydd: canfod plant sy'n colli addysg",
        "default_controller": "Awdurdod Lleol {area}",
        "issued": "Dyddiad cyhoeddi: {issued}",
        "lead": "Mae {controller} (\"ni\") yn defnyddio gwybodaeth o gofnodion cofrestru meddygon teulu'r "
                "GIG i ganfod plant o oedran ysgol gorfodol yn ardal {area} a allai fod yn colli addysg. Mae'r "
                "hysbysiad hwn yn dweud wrthych pa wybodaeth rydym yn ei chael, pam, pwy sy'n ei gweld, am "
                "ba hyd rydym yn ei chadw a beth yw eich hawliau, fel sy'n ofynnol gan Erthyglau 13 a 14 o "
                "Reoliad Cyffredinol y DU ar Ddiogelu Data (GDPR y DU). Nid ydym yn casglu'r wybodaeth hon "
                "gennych chi na'ch plentyn: daw atom gan y GIG, a dyna pam mae Erthygl 14 yn gymwys.",
        "h_controller": "Pwy ydym ni (rheolydd data)",
        "controller": "{controller} yw'r rheolydd data ar gyfer yr wybodaeth hon.",
        "l_contact": "Manylion cyswllt",
        "l_cme_officer": "Tîm Plant sy'n Colli Addysg",
        "h_dpo": "Ein Swyddog Diogelu Data",
        "l_name": "Enw",
        "l_email": "E-bost",
        "l_address": "Cyfeiriad",
        "dpo": "Cysylltwch â'n Swyddog Diogelu Data os oes gennych unrhyw gwestiwn am yr hysbysiad hwn, "
               "neu i arfer eich hawliau.",
        "h_purpose": "Pam rydym yn defnyddio'r wybodaeth hon",
        "purpose": "Rhaid i awdurdodau lleol wneud trefniadau i ganfod plant o oedran ysgol gorfodol yn eu "
                   "hardal nad ydynt wedi'u cofrestru mewn ysgol nac yn cael addysg addas fel arall (adran "
                   "436A o Ddeddf Addysg 1996). Rydym yn cymharu rhestr y GIG o'r plant sydd wedi'u "
                   "cofrestru gyda phractis meddyg teulu yn ardal {area} â'n cofrestrau addysg:",
        "purpose_outcome": "Nid oes angen gwneud dim pellach ynghylch plentyn sydd ar un o'n cofrestrau, a "
                           "chaiff ei wybodaeth ei dileu. Gallai plentyn nad yw ar unrhyw un ohonynt fod yn "
                           "colli addysg, a bydd swyddog Plant sy'n Colli Addysg yn gwneud ymholiadau.",
        "h_legal": "Ein sail gyfreithiol",
        "legal_gdpr": "Erthygl 6(1)(e) GDPR y DU (tasg gyhoeddus): mae'r prosesu'n angenrheidiol er mwyn "
                      "cyflawni tasg a gyflawnir er budd y cyhoedd neu wrth arfer awdurdod swyddogol a "
                      "freiniwyd ynom.",
        "legal_436a": "Adran 436A o Ddeddf Addysg 1996: ein dyletswydd i wneud trefniadau i ganfod plant yn "
                      "ein hardal nad ydynt yn cael addysg addas.",
        "legal_regulations": "Rheoliadau Cronfa Ddata Plant sy'n Colli Addysg (Cymru).",
        "h_source": "O ble mae'r wybodaeth yn dod",
        "source": "Mae Partneriaeth Cydwasanaethau GIG Cymru yn ei hanfon atom, o gofnodion cofrestru "
                  "meddygon teulu. Mae'n cyrraedd wedi'i hamgryptio a'i llofnodi, ac rydym yn ei gwirio cyn "
                  "ei defnyddio.",
        "h_categories": "Pa wybodaeth rydym yn ei chael",
        "categories": "Ar gyfer pob plentyn o oedran ysgol gorfodol sydd wedi'i gofrestru gyda phractis "
                      "meddyg teulu yn yr ardal, mae'r GIG yn anfon y canlynol atom:",
        "categories_not": "Nid ydym yn cael unrhyw wybodaeth glinigol (dim am gyflyrau iechyd na thriniaeth), "
                          "na dim am rieni neu ofalwyr.",
        "h_recipients": "Pwy sy'n gweld yr wybodaeth",
        "recipients_officers": "Mae swyddogion Plant sy'n Colli Addysg yn gweld gwybodaeth y plant a gedwir "
                               "ar gyfer ymholiadau pellach: plant nad ydynt ar unrhyw gofrestr, a'r "
                               "cyfatebiaethau posibl y maent yn eu gwirio.",
        "recipients_dpo": "Dim ond niferoedd y mae ein Swyddog Diogelu Data a'n harchwilwyr yn eu gweld (faint "
                          "o blant a gafwyd, a barwyd, a ddilëwyd ac a gadwyd), ac nid ydynt byth yn gweld "
                          "manylion unrhyw blentyn.",
        "recipients_none": "Nid ydym yn rhannu'r wybodaeth ag unrhyw un y tu allan i'r awdurdod, ac nid yw'n "
                           "cael ei throsglwyddo y tu allan i'r DU.",
        "h_matching": "Sut rydym yn cymharu cofnodion, a phenderfyniadau awtomataidd",
        "matching": "Mae cyfrifiadur yn cymharu manylion pob plentyn â'n cofrestrau. Pan fo'r gymhariaeth yn "
                    "ddigon sicr, ystyrir bod y plentyn wedi'i ganfod a chaiff ei wybodaeth ei dileu; pan "
                    "nad yw'n sicr, bydd swyddog yn ei gwirio (\"cyfatebiaeth bosibl\"). Ni wneir unrhyw "
                    "benderfyniad sy'n cael effaith gyfreithiol ar eich plentyn, nac effaith debyg sydd yr "
                    "un mor arwyddocaol, drwy ddulliau awtomataidd yn unig: bydd swyddog yn ymchwilio i "
                    "achos pob plentyn na chanfuwyd ar gofrestr. Dim ond cofrestrau nad ydynt yn hŷn na "
                    "{register_max_days} diwrnod a ddefnyddiwn ar gyfer y gymhariaeth, fel na chaiff "
                    "plentyn a ymunodd ag ysgol yn ddiweddar ei drin ar gam fel plentyn sy'n colli addysg.",
        "h_retention": "Am ba hyd rydym yn cadw'r wybodaeth",
        "retention": "Mae popeth a gadwn wedi'i amgryptio. Mae'r cyfnod yn dibynnu ar ganlyniad y "
                     "gymhariaeth:",
        "l_matched": "Plant a ganfuwyd ar gofrestr addysg",
        "matched": "caiff yr wybodaeth ei dileu ar ddiwedd y rhediad paru sy'n eu canfod. Rydym yn ei "
                   "dileu drwy ddinistrio'r allwedd amgryptio, felly ni ellir darllen unrhyw gopi ohoni eto, "
                   "gan gynnwys copïau wrth gefn. Mae tystysgrif dileu wedi'i llofnodi yn cofnodi nifer y "
                   "plant y dilëwyd eu cofnodion; nid yw'n cynnwys enwau nac unrhyw fanylion eraill am "
                   "unrhyw blentyn.",
        "retention_days": "{retention_days} diwrnod o'r rhediad a'u canfu, ar gyfer ymholiadau swyddog Plant "
                          "sy'n Colli Addysg; yna caiff yr wybodaeth ei dileu yn yr un modd.",
        "review_days": "{review_days} diwrnod ar y mwyaf. Os yw'r swyddog yn cadarnhau'r gyfatebiaeth, "
                       "caiff yr wybodaeth ei dileu; os nad yw, caiff ei chadw fel ar gyfer plentyn nad yw ar "
                       "unrhyw gofrestr, am {retention_days} diwrnod o ddyddiad y penderfyniad. Os na wneir "
                       "penderfyniad erbyn hynny, caiff yr wybodaeth ei dileu.",
        "quarantine_days": "{quarantine_days} diwrnod, wedi'u hamgryptio o hyd a heb eu defnyddio, er mwyn i "
                           "ni a'r GIG ganfod beth aeth o'i le a'u hanfon eto; yna caiff yr allwedd ei "
                           "dinistrio a'r ffeil ei dileu.",
        "h_rights": "Eich hawliau",
        "rights": "Mae gennych yr hawliau hyn, ar eich rhan eich hun neu ar ran eich plentyn:",
        "l_access": "Mynediad",
        "access": "gofyn am gopi o'r wybodaeth sydd gennym am eich plentyn.",
        "l_rectification": "Cywiro",
        "rectification": "gofyn i ni gywiro gwybodaeth anghywir.",
        "l_erasure": "Dileu",
        "erasure": "gofyn i ni ddileu'r wybodaeth, pan fo'r hawl hon yn gymwys. Gan ein bod yn defnyddio'r "
                   "wybodaeth ar gyfer tasg gyhoeddus, nid yw'n gymwys tra bo angen yr wybodaeth arnom ar "
                   "gyfer y dasg honno; rydym yn ei dileu'n awtomatig ar yr adegau a nodir uchod.",
        "l_restriction": "Cyfyngu",
        "restriction": "gofyn i ni gyfyngu ar y ffordd rydym yn defnyddio'r wybodaeth.",
        "l_objection": "Gwrthwynebu",
        "objection": "gwrthwynebu ein defnydd o'r wybodaeth, ar sail sy'n ymwneud â'ch sefyllfa benodol chi.",
        "l_complaint": "Cwyno",
        "complaint": "cwyno i Swyddfa'r Comisiynydd Gwybodaeth (ico.org.uk, 0303 123 1113).",
        "exercise": "I arfer unrhyw un o'r hawliau hyn, cysylltwch â'n Swyddog Diogelu Data, {dpo_name}, "
                    "drwy e-bost at {dpo_email} neu drwy'r post at {dpo_address}. Ar ôl i rediad paru ddod i "
                    "ben, nid oes gennym unrhyw wybodaeth am blentyn a ganfuwyd ar gofrestr addysg, felly nid "
                    "oes dim i'w roi na'i gywiro bryd hynny.",
        "h_complaints": "Cwynion",
        "complaints": "Os ydych yn anfodlon ar y ffordd rydym wedi defnyddio'r wybodaeth, cysylltwch â'n "
                      "Swyddog Diogelu Data yn gyntaf. Gallwch hefyd gwyno i Swyddfa'r Comisiynydd "
                      "Gwybodaeth (ICO), rheoleiddiwr diogelu data'r DU: ico.org.uk, ffôn 0303 123 1113.",
    },
}
