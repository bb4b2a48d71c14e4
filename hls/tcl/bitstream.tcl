# Vivado block design of the ZCU102 overlay and its bitstream: the Zynq UltraScale+ PS with
# the board preset, the engine IP exported by hls.tcl, its two m_axi masters on the HP ports
# through SmartConnect, its AXI-Lite control on M_AXI_HPM0_FPD, one PL clock and its reset.
# hls/Makefile (make bitstream) passes every setting; nothing here needs editing.
#
#   vivado -mode batch -source hls/tcl/bitstream.tcl -tclargs part=xczu9eg-ffvb1156-2-e \
#       board=zcu102 clock_mhz=150 ip_repo=<dir> vlnv=xilinx.com:hls:trilevel_engine:1.0 \
#       build=<dir> out=<dir> name=trilevel_zcu102 [jobs=8]
#
# Writes <out>/<name>.bit and <out>/<name>.hwh (one base name: PYNQ's Overlay finds the .hwh
# beside the .bit). They are copied only when the design is implemented and meets timing.
#
#   zynq_ultra_ps_e_0 (board preset, pl_clk0 = clock_mhz)
#     M_AXI_HPM0_FPD -> smc_control -> trilevel_engine_0/s_axi_control  (registers at 0xA000_0000)
#     S_AXI_HP0_FPD  <- smc_gmem_a  <- trilevel_engine_0/m_axi_gmem_a   (activations, read/write)
#     S_AXI_HP1_FPD  <- smc_gmem_w  <- trilevel_engine_0/m_axi_gmem_w   (weight streams, read)
#   rst_pl_clk0: pl_resetn0 synchronised to pl_clk0 -> every aresetn / ap_rst_n

set bd system
set ps zynq_ultra_ps_e_0
set engine trilevel_engine_0
set control_base 0xA0000000

# ---- options: key=value words of the command line
array set opt {jobs 8}
foreach word $::argv {
    if {[regexp {^([a-z_]+)=(.*)$} $word -> key value]} {
        set opt($key) $value
    }
}

proc fail {message} {
    puts stderr "error: bitstream.tcl: $message"
    exit 1
}

proc need {key} {
    global opt
    if {![info exists opt($key)] || $opt($key) eq ""} {
        fail "missing option $key=... (hls/Makefile passes it: make bitstream)"
    }
    return $opt($key)
}

set part [need part]
set board [need board]
set clock_mhz [need clock_mhz]
set ip_repo [file normalize [need ip_repo]]
set vlnv [need vlnv]
set build [file normalize [need build]]
set out [file normalize [need out]]
set name [need name]
set jobs $opt(jobs)
if {![string is integer -strict $clock_mhz] || $clock_mhz <= 0} {
    fail "clock_mhz=$clock_mhz is not a whole number of MHz"
}

# ---- project on the board's part, the engine's IP repository
set proj_dir [file join $build $name]
create_project -force $name $proj_dir -part $part
set board_parts [get_board_parts -quiet -latest_file_version "*:${board}:*"]
if {[llength $board_parts] == 0} {
    fail "no board files for $board in this Vivado installation"
}
set_property board_part [lindex $board_parts 0] [current_project]
set_property ip_repo_paths [list $ip_repo] [current_project]
update_ip_catalog -rebuild
if {[llength [get_ipdefs -quiet $vlnv]] == 0} {
    fail "IP $vlnv not found in $ip_repo (make hls exports it)"
}

# ---- the block design
create_bd_design $bd

create_bd_cell -type ip -vlnv xilinx.com:ip:zynq_ultra_ps_e $ps
apply_bd_automation -rule xilinx.com:bd_rule:zynq_ultra_ps_e -config {apply_board_preset "1"} [get_bd_cells $ps]
# Ports of the PS: HPM0_FPD (M_AXI_GP0) is the only master, 32 bits for the registers;
# HP0_FPD and HP1_FPD (S_AXI_GP2, S_AXI_GP3) at the engine's 128-bit beat; PL clock 0.
set_property -dict [list \
    CONFIG.PSU__USE__M_AXI_GP0 {1} \
    CONFIG.PSU__MAXIGP0__DATA_WIDTH {32} \
    CONFIG.PSU__USE__M_AXI_GP1 {0} \
    CONFIG.PSU__USE__M_AXI_GP2 {0} \
    CONFIG.PSU__USE__S_AXI_GP2 {1} \
    CONFIG.PSU__SAXIGP2__DATA_WIDTH {128} \
    CONFIG.PSU__USE__S_AXI_GP3 {1} \
    CONFIG.PSU__SAXIGP3__DATA_WIDTH {128} \
    CONFIG.PSU__FPGA_PL0_ENABLE {1} \
    CONFIG.PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ $clock_mhz \
] [get_bd_cells $ps]
set actual_mhz [get_property CONFIG.PSU__CRL_APB__PL0_REF_CTRL__ACT_FREQMHZ [get_bd_cells $ps]]
if {abs($actual_mhz - $clock_mhz) > 0.01 * $clock_mhz} {
    fail "pl_clk0 comes out at $actual_mhz MHz, not $clock_mhz MHz"
}

create_bd_cell -type ip -vlnv $vlnv $engine
foreach smc {smc_control smc_gmem_a smc_gmem_w} {
    create_bd_cell -type ip -vlnv xilinx.com:ip:smartconnect $smc
    set_property -dict [list CONFIG.NUM_SI {1} CONFIG.NUM_MI {1}] [get_bd_cells $smc]
}
create_bd_cell -type ip -vlnv xilinx.com:ip:proc_sys_reset rst_pl_clk0

connect_bd_intf_net [get_bd_intf_pins $ps/M_AXI_HPM0_FPD] [get_bd_intf_pins smc_control/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_control/M00_AXI] [get_bd_intf_pins $engine/s_axi_control]
connect_bd_intf_net [get_bd_intf_pins $engine/m_axi_gmem_a] [get_bd_intf_pins smc_gmem_a/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_gmem_a/M00_AXI] [get_bd_intf_pins $ps/S_AXI_HP0_FPD]
connect_bd_intf_net [get_bd_intf_pins $engine/m_axi_gmem_w] [get_bd_intf_pins smc_gmem_w/S00_AXI]
connect_bd_intf_net [get_bd_intf_pins smc_gmem_w/M00_AXI] [get_bd_intf_pins $ps/S_AXI_HP1_FPD]

# One clock domain: pl_clk0 drives the engine, the interconnect and the PS port clocks.
connect_bd_net [get_bd_pins $ps/pl_clk0] \
    [get_bd_pins $ps/maxihpm0_fpd_aclk] [get_bd_pins $ps/saxihp0_fpd_aclk] [get_bd_pins $ps/saxihp1_fpd_aclk] \
    [get_bd_pins $engine/ap_clk] [get_bd_pins smc_control/aclk] [get_bd_pins smc_gmem_a/aclk] \
    [get_bd_pins smc_gmem_w/aclk] [get_bd_pins rst_pl_clk0/slowest_sync_clk]
connect_bd_net [get_bd_pins $ps/pl_resetn0] [get_bd_pins rst_pl_clk0/ext_reset_in]
connect_bd_net [get_bd_pins rst_pl_clk0/peripheral_aresetn] \
    [get_bd_pins $engine/ap_rst_n] [get_bd_pins smc_control/aresetn] [get_bd_pins smc_gmem_a/aresetn] \
    [get_bd_pins smc_gmem_w/aresetn]

# Addresses: the registers at a fixed base (the .hwh records it for PYNQ); the engine's masters
# see the PS memory map (DDR low and high) through their HP ports.
assign_bd_address -target_address_space [get_bd_addr_spaces $ps/Data] -offset $control_base -range 64K \
    [get_bd_addr_segs $engine/s_axi_control/Reg]
assign_bd_address
validate_bd_design
save_bd_design

# ---- wrapper, synthesis, implementation, bitstream
set bd_file [get_files $bd.bd]
add_files -norecurse [make_wrapper -files $bd_file -top]
set_property top ${bd}_wrapper [current_fileset]
update_compile_order -fileset sources_1

launch_runs synth_1 -jobs $jobs
wait_on_run synth_1
if {[get_property PROGRESS [get_runs synth_1]] ne "100%"} {
    fail "synthesis failed (see [get_property DIRECTORY [get_runs synth_1]])"
}
launch_runs impl_1 -to_step write_bitstream -jobs $jobs
wait_on_run impl_1
if {[get_property PROGRESS [get_runs impl_1]] ne "100%"} {
    fail "implementation failed (see [get_property DIRECTORY [get_runs impl_1]])"
}

open_run impl_1
report_utilization -file [file join $build utilization.rpt]
report_timing_summary -file [file join $build timing.rpt]
set wns [get_property SLACK [get_timing_paths -max_paths 1 -nworst 1 -setup]]
if {$wns eq "" || $wns < 0} {
    fail "timing not met at $clock_mhz MHz (worst setup slack $wns ns, see [file join $build timing.rpt]); nothing copied"
}

# ---- the overlay: .bit and .hwh under one base name
set bit [file join [get_property DIRECTORY [get_runs impl_1]] ${bd}_wrapper.bit]
set hwh {}
# Vivado 2020.2 and later write the hardware hand-off under <name>.gen, earlier ones under .srcs.
foreach dir {gen srcs} {
    set candidate [file join $proj_dir ${name}.$dir sources_1 bd $bd hw_handoff ${bd}.hwh]
    if {$hwh eq "" && [file exists $candidate]} {
        set hwh $candidate
    }
}
if {![file exists $bit] || $hwh eq ""} {
    fail "bitstream or hardware hand-off missing after implementation (bit: $bit)"
}
file mkdir $out
file copy -force $bit [file join $out ${name}.bit]
file copy -force $hwh [file join $out ${name}.hwh]
puts "bitstream.tcl: wrote [file join $out ${name}.bit] and ${name}.hwh (worst setup slack $wns ns)"
exit 0
