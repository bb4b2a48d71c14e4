"""The synthesis flow without the Xilinx tools: make's refusals, the Tcl scripts, the manifest.

Nobody runs Vitis HLS or Vivado here, so the Tcl scripts run in plain tclsh with every tool
command replaced by a stub that records its arguments (and returns what the script needs).
That checks what the scripts would ask of the tools: the part, the clock from config.h, the
steps chosen by the Makefile, the VLNV, the block design's connections, the copy of the
.bit and .hwh under one name, and the refusals (missing options, failed timing).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys

import pytest
from engine_harness import ROOT
from trilevel_host.engine.abi import abi, config

TCLSH = shutil.which("tclsh")
needs_tcl = pytest.mark.skipif(
    TCLSH is None, reason="tclsh (Tcl 8.6) runs the Tcl scripts against recorded stubs"
)
VLNV = "xilinx.com:hls:trilevel_engine:1.0"
PART = "xczu9eg-ffvb1156-2-e"


# ---- make without the tools: one line, exit status 2, nothing built first


@pytest.mark.parametrize(
    "where,target,var",
    [
        (".", "hls", "VITIS_HLS"),
        (".", "bitstream", "VIVADO"),
        ("hls", "hls", "VITIS_HLS"),
        ("hls", "bitstream", "VIVADO"),
    ],
)
def test_make_stops_at_once_without_the_tool(tmp_path, where, target, var):
    tool = "no-such-xilinx-tool"
    r = subprocess.run(
        [
            "make",
            "-C",
            str(ROOT / where),
            target,
            f"{var}={tool}",
            f"VENV={tmp_path / 'venv'}",
            f"HLS_BUILD={tmp_path / 'hls'}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert len(r.stderr.splitlines()) == 1 and tool in r.stderr and "not found on PATH" in r.stderr
    assert not (tmp_path / "venv").exists() and not (tmp_path / "hls").exists()


# ---- Tcl scripts against stubs

STUBS = r"""
set ::log [open $::env(TCL_LOG) w]
proc record {name args} { puts $::log [list $name {*}$args]; flush $::log }
foreach cmd {open_project set_top add_files open_solution set_part create_clock csim_design csynth_design
             cosim_design export_design create_project set_property update_ip_catalog create_bd_design
             create_bd_cell apply_bd_automation connect_bd_intf_net connect_bd_net assign_bd_address
             validate_bd_design save_bd_design update_compile_order launch_runs wait_on_run open_run
             report_utilization report_timing_summary} {
    proc $cmd {args} "record $cmd {*}\$args; return {}"
}
# look-ups return their last argument, so the log shows the names the script connects
foreach cmd {get_bd_cells get_bd_pins get_bd_intf_pins get_bd_addr_spaces get_bd_addr_segs get_files get_runs
             current_project current_fileset get_timing_paths} {
    proc $cmd {args} "record $cmd {*}\$args; return \[lindex \$args end\]"
}
proc get_board_parts {args} { return xilinx.com:zcu102:part0:3.4 }
proc get_ipdefs {args} { return [lindex $args end] }
proc make_wrapper {args} { return wrapper.v }
proc get_property {name args} {
    switch -glob -- $name {
        *ACT_FREQMHZ { return $::env(TCL_ACT_MHZ) }
        PROGRESS { return 100% }
        DIRECTORY { return $::env(TCL_RUNS) }
        SLACK { return $::env(TCL_SLACK) }
    }
    return {}
}
rename exit real_exit
proc exit {{code 0}} { close $::log; real_exit $code }
source $::env(TCL_SCRIPT)
"""


def run_tcl(tmp_path, script: str, args: list[str], **env: str):
    """Run hls/tcl/<script> in tclsh with the stubs; returns the process and the recorded calls
    as (command, the rest of its line as Tcl wrote the list)."""
    stubs, log = tmp_path / "stubs.tcl", tmp_path / "calls.log"
    stubs.write_text(STUBS)
    r = subprocess.run(
        [TCLSH, str(stubs), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={
            "TCL_SCRIPT": str(ROOT / "hls" / "tcl" / script),
            "TCL_LOG": str(log),
            "TCL_ACT_MHZ": "149.998",
            "TCL_SLACK": "0.25",
            "TCL_RUNS": str(tmp_path),
            **env,
        },
    )
    lines = log.read_text().splitlines() if log.exists() else []
    return r, [tuple((line + " ").split(" ", 1)) for line in lines]


def called(calls, name) -> list[str]:
    return [rest.strip() for cmd, rest in calls if cmd == name]


@pytest.fixture
def vector_dirs(tmp_path):
    vec = tmp_path / "vectors"
    for name in ("a", "b"):
        (vec / name).mkdir(parents=True)
        (vec / name / "vector.txt").write_text("name x\n")
    (vec / "not_a_vector").mkdir()
    return vec


@needs_tcl
def test_hls_tcl_runs_the_chosen_steps(tmp_path, vector_dirs):
    mhz = config()["CLOCK_MHZ"]
    build = tmp_path / "build"
    args = [
        "steps=csim,csynth,export",
        f"part={PART}",
        f"clock_mhz={mhz}",
        f"build={build}",
        f"vectors={vector_dirs}",
    ]
    r, calls = run_tcl(tmp_path, "hls.tcl", args)
    assert r.returncode == 0, r.stderr
    names = [c[0] for c in calls]
    assert names.index("csim_design") < names.index("csynth_design") < names.index("export_design")
    assert "cosim_design" not in names
    assert called(calls, "set_part") == [PART]
    assert called(calls, "create_clock") == [f"-period {1000 / mhz:.3f} -name default"]
    assert called(calls, "set_top") == ["trilevel_engine"]
    assert "-reset solution -flow_target vivado" in called(calls, "open_solution")
    assert called(calls, "csim_design") == [f"-argv {{{vector_dirs / 'a'} {vector_dirs / 'b'}}}"]
    export = called(calls, "export_design")[0]
    for flag in (
        "-format ip_catalog",
        "-vendor xilinx.com",
        "-library hls",
        "-ipname trilevel_engine",
        "-version 1.0",
    ):
        assert flag in export
    sources = " ".join(called(calls, "add_files"))
    assert "hls/src/engine.cpp" in sources and "-tb" in sources and "hls/tb/tb_engine.cpp" in sources


@needs_tcl
@pytest.mark.parametrize(
    "args,message",
    [
        (["part=p", "clock_mhz=150", "build=b"], "missing option steps"),
        (["steps=csim,place", "part=p", "clock_mhz=150", "build=b"], "unknown step 'place'"),
        (["steps=csynth", "part=p", "clock_mhz=fast", "build=b"], "not a frequency"),
        (["steps=csim", "part=p", "clock_mhz=150", "build=b", "vectors=/nonexistent"], "no test vectors"),
    ],
)
def test_hls_tcl_refuses_bad_options(tmp_path, args, message):
    r, calls = run_tcl(tmp_path, "hls.tcl", args)
    assert r.returncode == 1 and message in r.stderr and r.stderr.startswith("error: hls.tcl:")
    assert "open_project" not in [c[0] for c in calls]


def bitstream_args(tmp_path):
    return [
        f"part={PART}",
        "board=zcu102",
        "clock_mhz=150",
        f"ip_repo={tmp_path / 'ip'}",
        f"vlnv={VLNV}",
        f"build={tmp_path / 'build'}",
        f"out={tmp_path / 'out'}",
        "name=overlay",
        "jobs=2",
    ]


def fake_implementation(tmp_path):
    """The files a successful implementation leaves: the bitstream and the hardware hand-off."""
    (tmp_path / "system_wrapper.bit").write_bytes(b"bit")
    hwh = tmp_path / "build/overlay/overlay.gen/sources_1/bd/system/hw_handoff/system.hwh"
    hwh.parent.mkdir(parents=True)
    hwh.write_text("<hwh/>")


@needs_tcl
def test_bitstream_tcl_builds_the_block_design(tmp_path):
    fake_implementation(tmp_path)
    r, calls = run_tcl(tmp_path, "bitstream.tcl", bitstream_args(tmp_path))
    assert r.returncode == 0, r.stderr
    assert called(calls, "create_project") == [f"-force overlay {tmp_path / 'build/overlay'} -part {PART}"]
    auto = called(calls, "apply_bd_automation")[0]
    assert "bd_rule:zynq_ultra_ps_e" in auto and "apply_board_preset" in auto
    props = " ".join(called(calls, "set_property"))
    for p in (
        "PSU__USE__S_AXI_GP2 1",
        "PSU__USE__S_AXI_GP3 1",
        "PSU__USE__M_AXI_GP0 1",
        "PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ 150",
        "board_part xilinx.com:zcu102:part0:3.4",
    ):
        assert p in props
    assert f"-type ip -vlnv {VLNV} trilevel_engine_0" in called(calls, "create_bd_cell")
    links = called(calls, "connect_bd_intf_net")
    for a, b in [
        ("trilevel_engine_0/m_axi_gmem_a", "smc_gmem_a/S00_AXI"),
        ("smc_gmem_a/M00_AXI", "zynq_ultra_ps_e_0/S_AXI_HP0_FPD"),
        ("trilevel_engine_0/m_axi_gmem_w", "smc_gmem_w/S00_AXI"),
        ("smc_gmem_w/M00_AXI", "zynq_ultra_ps_e_0/S_AXI_HP1_FPD"),
        ("zynq_ultra_ps_e_0/M_AXI_HPM0_FPD", "smc_control/S00_AXI"),
        ("smc_control/M00_AXI", "trilevel_engine_0/s_axi_control"),
    ]:
        assert f"{a} {b}" in links
    nets = " ".join(called(calls, "connect_bd_net"))
    assert "zynq_ultra_ps_e_0/pl_clk0" in nets and "trilevel_engine_0/ap_clk" in nets
    assert "rst_pl_clk0/peripheral_aresetn" in nets and "trilevel_engine_0/ap_rst_n" in nets
    assert any("-offset 0xA0000000 -range 64K" in c for c in called(calls, "assign_bd_address"))
    names = [c[0] for c in calls]
    assert names.index("validate_bd_design") < names.index("launch_runs")
    assert "impl_1 -to_step write_bitstream -jobs 2" in called(calls, "launch_runs")
    assert (tmp_path / "out/overlay.bit").read_bytes() == b"bit"
    assert (tmp_path / "out/overlay.hwh").read_text() == "<hwh/>"


@needs_tcl
@pytest.mark.parametrize(
    "env,message",
    [({"TCL_SLACK": "-0.4"}, "timing not met"), ({"TCL_ACT_MHZ": "125.0"}, "pl_clk0 comes out at 125.0 MHz")],
)
def test_bitstream_tcl_copies_nothing_when_the_design_fails(tmp_path, env, message):
    fake_implementation(tmp_path)
    r, _ = run_tcl(tmp_path, "bitstream.tcl", bitstream_args(tmp_path), **env)
    assert r.returncode == 1 and message in r.stderr
    assert not (tmp_path / "out").exists()


# ---- the manifest beside the bitstream


def test_manifest_records_the_engine_and_the_files(tmp_path):
    (tmp_path / "ov.bit").write_bytes(b"\x00bitstream")
    (tmp_path / "ov.hwh").write_text("<hwh/>")
    cmd = [
        sys.executable,
        str(ROOT / "hls/tools/bitstream_manifest.py"),
        "--dir",
        str(tmp_path),
        "--name",
        "ov",
        "--part",
        PART,
        "--board",
        "zcu102",
        "--clock-mhz",
        "150",
        "--vlnv",
        VLNV,
    ]
    subprocess.run(cmd, check=True, capture_output=True)
    m = json.loads((tmp_path / "ov.json").read_text())
    include = ROOT / "hls" / "include"
    expected_hash = hashlib.sha256(
        (include / "config.h").read_bytes() + (include / "abi.h").read_bytes()
    ).hexdigest()
    assert m["abi_version"] == abi()["abi"]["ABI_VERSION"]
    assert m["config_hash"]["sha256"] == expected_hash
    assert m["ip_vlnv"] == VLNV and m["part"] == PART and m["clock_mhz"] == 150
    assert m["bit"] == {"file": "ov.bit", "bytes": 10, "sha256": hashlib.sha256(b"\x00bitstream").hexdigest()}
    assert m["hwh"]["file"] == "ov.hwh" and m["built"].endswith("+00:00")

    (tmp_path / "ov.hwh").unlink()
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1 and "ov.hwh" in r.stderr
    assert json.loads((tmp_path / "ov.json").read_text()) == m  # the earlier manifest is not lost
