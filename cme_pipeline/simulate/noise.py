"""Register-side noise: the errors and differences real education registers have.

Every rate is a parameter; ``NoiseConfig().scaled(2.0)`` is the "heavy noise" setting the matching
benchmarks use. Rates are per register record and are applied independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

from cme_pipeline.simulate.population import FamilyConfig


@dataclass(frozen=True)
class NoiseConfig:
    """Probabilities of each kind of register-side noise, per register record."""

    forename_typo: float = 0.02
    forename_variant: float = 0.04  # nickname or Welsh/English equivalent (when one exists)
    name_swap: float = 0.01  # forename and middle name swapped (when there is a middle name)
    surname_typo: float = 0.015
    surname_change: float = 0.01  # step-parent's name, or one part of a hyphenated name
    moved_house: float = 0.05  # register holds a different address and postcode
    dob_transposed: float = 0.005  # day and month swapped (when both are 12 or less)
    dob_digit_slip: float = 0.005  # one digit of the day off by one
    missing_postcode: float = 0.01
    missing_middle_names: float = 0.15
    missing_sex: float = 0.005
    missing_address: float = 0.005
    upper_case: float = 0.10  # the whole record typed in capitals
    ascii_fold: float = 0.5  # diacritics dropped (Siân -> Sian), when the name has any
    # Families and stale registers (partner-side truth, not per-record noise; not scaled).
    families: FamilyConfig = field(default_factory=FamilyConfig)

    def scaled(self, factor: float) -> NoiseConfig:
        """Every per-record rate multiplied by ``factor`` (capped at 1); ``families`` unchanged."""
        rates = [f.name for f in fields(self) if f.name != "families"]
        return replace(self, **{name: min(1.0, getattr(self, name) * factor) for name in rates})

    def hard(self) -> NoiseConfig:
        """These rates with the harder families and stale registers of ``FamilyConfig.hard()``."""
        return replace(self, families=FamilyConfig.hard())


@dataclass(frozen=True)
class CoverageConfig:
    """How GP-registered children divide between the registers (fractions of the extract).

    About 94% are on some register; the other 6% are modelled by reason.
    """

    maintained_school: float = 0.910
    independent_school_returned: float = 0.012
    eotas: float = 0.006
    ehe: float = 0.010
    cme_known: float = 0.002
    # reasons for being on no register; these four sum with the five above to 1
    independent_not_returned: float = 0.015
    schooling_in_england: float = 0.015
    stale_gp_registration: float = 0.025
    genuinely_missing: float = 0.005
    # a child on one register may also be on another (dual registration, EHE under CME enquiry)
    dual_eotas: float = 0.004  # of school-census children, also on EOTAS
    dual_cme: float = 0.100  # of EHE children, also on the CME register
    # children on registers but not on this LA's extract, as a fraction of the extract size:
    # nursery and sixth-form pupils outside the age window, and pupils with a GP elsewhere
    register_only: float = 0.13

    def on_register_rates(self) -> dict[str, float]:
        """Rates of the outcomes that put a child on a register."""
        return {
            "school_census:maintained": self.maintained_school,
            "school_census:independent": self.independent_school_returned,
            "eotas": self.eotas,
            "ehe": self.ehe,
            "cme": self.cme_known,
        }

    def off_register_rates(self) -> dict[str, float]:
        """Rates of each reason for being on no register."""
        return {
            "independent_school_not_returned": self.independent_not_returned,
            "schooling_in_england": self.schooling_in_england,
            "stale_gp_registration": self.stale_gp_registration,
            "genuinely_missing": self.genuinely_missing,
        }
