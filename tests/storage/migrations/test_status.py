"""Which migrations a database records and lacks: the one comparison that status and adoption share."""

from __future__ import annotations

from daycare.storage.migrations.status import versions_compare


def test_versions_compare_keeps_the_chains_order_for_pending_and_the_files_for_unknown() -> None:
    compared = versions_compare(["0_a.py", "9_z.py", "2_c.py", "8_y.py"], ["0_a.py", "1_b.py", "2_c.py", "3_d.py"])
    assert compared.applied == ("0_a.py", "9_z.py", "2_c.py", "8_y.py")
    assert compared.pending == ("1_b.py", "3_d.py")
    assert compared.unknown == ("9_z.py", "8_y.py")
    assert versions_compare([], ["0_a.py"]).pending == ("0_a.py",)
