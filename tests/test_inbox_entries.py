"""One bad inbox entry never blocks an LA: anything that is not a regular file within the size
limit, or cannot be read, is quarantined with one line, and the next delivery is processed."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from fixtures_quality import GoodExtract

from cme_pipeline.config import Settings
from cme_pipeline.home import open_home
from cme_pipeline.la.intake import DeliveryQuarantined, expire_quarantine, open_delivery_file
from cme_pipeline.runs import waiting_deliveries
from cme_pipeline.simulate.package import package_extract

LA = "W06000015"
EXTRACT_DATE = dt.date(2026, 10, 1)


def test_a_folder_posing_as_a_delivery_is_quarantined_and_the_next_one_opens(
    settings: Settings, good_extract: GoodExtract
) -> None:
    home = open_home(settings)
    settings.inbox(LA).mkdir(parents=True, exist_ok=True)
    folder = settings.inbox(LA) / "D20260901-W06000015-00000000.cmedelivery"  # sorts first
    (folder / "inside").mkdir(parents=True)
    good = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    first = waiting_deliveries(settings, LA)[0]
    assert first == folder
    with pytest.raises(DeliveryQuarantined, match="not a regular file"):
        open_delivery_file(home, LA, first, EXTRACT_DATE.year)
    assert waiting_deliveries(settings, LA) == [good]
    assert open_delivery_file(home, LA, good, EXTRACT_DATE.year).validation.success
    ended = expire_quarantine(home, LA, dt.date.today() + dt.timedelta(days=30))
    assert [e.delivery_file for e in ended] == [folder.name] and not any(settings.quarantine(LA).iterdir())


def test_a_delivery_over_the_size_limit_is_never_read_into_memory(
    settings: Settings, good_extract: GoodExtract
) -> None:
    small = replace(open_home(settings), settings=replace(settings, max_delivery_bytes=1000))
    path = package_extract(settings, LA, good_extract.csv(), extract_date=EXTRACT_DATE)
    with pytest.raises(DeliveryQuarantined, match="larger than the limit of 1000 bytes"):
        open_delivery_file(small, LA, path, EXTRACT_DATE.year)
    assert not path.exists() and len(list(settings.quarantine(LA).glob("*.cmedelivery"))) == 1


def test_a_dangling_link_is_quarantined_not_followed(settings: Settings) -> None:
    settings.inbox(LA).mkdir(parents=True, exist_ok=True)
    link = settings.inbox(LA) / "D20260901-W06000015-00000001.cmedelivery"
    link.symlink_to(settings.home / "nowhere")
    with pytest.raises(DeliveryQuarantined, match="not a regular file"):
        open_delivery_file(open_home(settings), LA, link, EXTRACT_DATE.year)
    assert not link.is_symlink()
