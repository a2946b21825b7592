import pytest
from finn.util.basic import part_map
from finn.util.platforms import platforms

from flow.core.errors import ConfigError, UnknownTargetError
from hw_targets import list_targets, load_target

EXPECTED = {
    # name: (part, LUT, FF, BRAM18, URAM, DSP) from the device data sheets
    "pynq-z1": ("xc7z020clg400-1", 53200, 106400, 280, 0, 220),
    "pynq-z2": ("xc7z020clg400-1", 53200, 106400, 280, 0, 220),
    "ultra96-v2": ("xczu3eg-sbva484-1-i", 70560, 141120, 432, 0, 360),
    "ultra96": ("xczu3eg-sbva484-1-e", 70560, 141120, 432, 0, 360),
    "zcu102": ("xczu9eg-ffvb1156-2-e", 274080, 548160, 1824, 0, 2520),
    "zcu104": ("xczu7ev-ffvc1156-2-e", 230400, 460800, 624, 96, 1728),
    "kv260": ("xck26-sfvc784-2LV-c", 117120, 234240, 288, 64, 1248),
    "alveo-u250": ("xcu250-figd2104-2L-e", 1728000, 3456000, 5376, 1280, 12288),
}


def test_every_expected_board_is_listed():
    assert {t.name for t in list_targets()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_board_part_and_resources(name):
    t = load_target(name)
    part, lut, ff, bram, uram, dsp = EXPECTED[name]
    r = t.resources
    assert (t.part, r.lut, r.ff, r.bram_18k, r.uram, r.dsp) == (part, lut, ff, bram, uram, dsp)
    assert t.clock_mhz > 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_part_is_the_one_finn_maps_the_board_to(name):
    t = load_target(name)
    if t.finn_board not in part_map:
        pytest.skip(f"FINN's part_map has no {t.finn_board}")
    assert part_map[t.finn_board] == t.part


ZYNQ_IN_FINN_PLATFORMS = sorted(n for n in EXPECTED if load_target(n).shell == "zynq" and load_target(n).finn_board in platforms)


@pytest.mark.parametrize("name", ZYNQ_IN_FINN_PLATFORMS)
def test_zynq_totals_agree_with_finn_platform_table(name):
    # finn.util.platforms rounds the data-sheet totals (and lists a few BRAM/URAM fewer than the
    # data sheets on the ZU3EG/ZU7EV); every total agrees within 5%, the DSP count exactly.
    t = load_target(name)
    finn = dict(zip(("lut", "ff", "bram_18k", "uram", "dsp"), platforms[t.finn_board]().compute_resources[0]))
    ours = t.resources.model_dump()
    assert ours["dsp"] == finn["dsp"]
    for k, v in finn.items():
        assert abs(ours[k] - v) <= 0.05 * max(v, 1), (k, ours[k], v)


def test_zynq_boards_checked_against_finn_include_the_finn_examples_boards():
    assert {"pynq-z1", "ultra96", "zcu104", "zcu102"} <= set(ZYNQ_IN_FINN_PLATFORMS)


def test_budget_applies_finn_default_caps():
    b = load_target("pynq-z1").budget()
    assert b == {"lut": 37240, "ff": 53200, "bram_18k": 224, "uram": 0, "dsp": 176}


def test_lookup_is_case_insensitive_and_accepts_display_name():
    assert load_target("PYNQ-Z1").name == "pynq-z1"
    assert load_target("Ultra96-V2").name == "ultra96-v2"


def test_unknown_target_lists_known_boards():
    with pytest.raises(UnknownTargetError, match="pynq-z1"):
        load_target("pynq-z9")


def test_a_board_is_added_by_adding_a_file(tmp_path):
    (tmp_path / "myboard.toml").write_text(
        'display_name = "My board"\npart = "xc7z010clg400-1"\nfinn_board = "Pynq-Z1"\nshell = "zynq"\n'
        "clock_mhz = 125.0\n[resources]\nlut = 17600\nff = 35200\nbram_18k = 120\nuram = 0\ndsp = 80\n"
    )
    assert [t.name for t in list_targets(tmp_path)] == ["myboard"]
    t = load_target("myboard", directory=tmp_path)
    assert t.budget()["lut"] == int(17600 * 0.7)
    assert load_target(tmp_path / "myboard.toml").clock_mhz == 125.0


def test_bad_board_file_names_the_field(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('display_name = "x"\npart = "p"\nfinn_board = "b"\nshell = "zynq"\nclock_mhz = -1\n[resources]\nlut=1\nff=1\nbram_18k=0\nuram=0\ndsp=0\n')
    with pytest.raises(ConfigError, match="clock_mhz"):
        load_target(p)
