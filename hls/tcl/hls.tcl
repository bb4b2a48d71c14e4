# Vitis HLS project of the engine: C simulation, C synthesis, C/RTL co-simulation and the
# export as a Vivado IP. hls/Makefile (make hls) chooses the steps and passes every setting;
# nothing here needs editing.
#
#   vitis_hls -f hls/tcl/hls.tcl -tclargs steps=csim,csynth,cosim,export \
#       part=xczu9eg-ffvb1156-2-e clock_mhz=150 build=<dir> vectors=<dir> \
#       [ip_vendor=xilinx.com] [ip_library=hls] [ip_version=1.0]
#
# steps run in the fixed order csim, csynth, cosim, export; cosim and export need a
# synthesized solution (an earlier run with csynth). vectors is a directory of test-vector
# directories (hls/tools/write_tb_vectors.py) that the testbench hls/tb/tb_engine.cpp checks
# in C simulation and co-simulation. The IP lands in <build>/trilevel_engine_prj/solution/
# impl/ip with the VLNV <ip_vendor>:<ip_library>:trilevel_engine:<ip_version>, which the
# block design (bitstream.tcl) instantiates and the PYNQ driver binds to.

set top trilevel_engine
set step_order {csim csynth cosim export}
set hls_dir [file dirname [file dirname [file normalize [info script]]]]

# ---- options: key=value words of the command line
array set opt {ip_vendor xilinx.com ip_library hls ip_version 1.0}
foreach word $::argv {
    if {[regexp {^([a-z_]+)=(.*)$} $word -> key value]} {
        set opt($key) $value
    }
}

proc fail {message} {
    puts stderr "error: hls.tcl: $message"
    exit 1
}

proc need {key} {
    global opt
    if {![info exists opt($key)] || $opt($key) eq ""} {
        fail "missing option $key=... (hls/Makefile passes it: make hls)"
    }
    return $opt($key)
}

set steps [split [need steps] ,]
foreach s $steps {
    if {[lsearch -exact $step_order $s] < 0} {
        fail "unknown step '$s' (steps are [join $step_order ,])"
    }
}
proc wants {step} {
    global steps
    return [expr {[lsearch -exact $steps $step] >= 0}]
}

set part [need part]
set clock_mhz [need clock_mhz]
if {![string is double -strict $clock_mhz] || $clock_mhz <= 0} {
    fail "clock_mhz=$clock_mhz is not a frequency"
}
set period_ns [format %.3f [expr {1000.0 / $clock_mhz}]]
set build [file normalize [need build]]
set vectors {}
if {[wants csim] || [wants cosim]} {
    foreach d [lsort [glob -nocomplain -type d [file join [need vectors] *]]] {
        if {[file exists [file join $d vector.txt]]} {
            lappend vectors $d
        }
    }
    if {[llength $vectors] == 0} {
        fail "no test vectors in [need vectors] (make -C hls vectors writes them)"
    }
}

# ---- project: a fresh one when synthesizing, else the one an earlier csynth left
file mkdir $build
cd $build
set fresh [expr {[wants csynth] || ![file isdirectory ${top}_prj]}]
if {$fresh} {
    open_project -reset ${top}_prj
} else {
    open_project ${top}_prj
}
set_top $top
set cflags "-std=c++14 -I[file join $hls_dir include]"
add_files [file join $hls_dir src engine.cpp] -cflags $cflags
add_files -tb [file join $hls_dir tb tb_engine.cpp] -cflags "$cflags -Wno-unknown-pragmas"
if {$fresh} {
    open_solution -reset solution -flow_target vivado
} else {
    open_solution solution
}
set_part $part
# The period comes from config.h (CFG_CLOCK_MHZ), the PL clock of the block design too.
create_clock -period $period_ns -name default

# ---- steps; any failure stops with a non-zero exit status
if {[wants csim]} {
    puts "hls.tcl: C simulation of [llength $vectors] test vectors"
    if {[catch {csim_design -argv [join $vectors " "]} msg]} {
        fail "C simulation failed: $msg"
    }
}
if {[wants csynth]} {
    if {[catch {csynth_design} msg]} {
        fail "C synthesis failed: $msg"
    }
    set report [file join $build ${top}_prj solution syn report ${top}_csynth.rpt]
    if {[file exists $report]} {
        file copy -force $report [file join $build ${top}_csynth.rpt]
    }
}
if {[wants cosim]} {
    puts "hls.tcl: C/RTL co-simulation of [llength $vectors] test vectors"
    if {[catch {cosim_design -rtl verilog -trace_level none -argv [join $vectors " "]} msg]} {
        fail "C/RTL co-simulation failed: $msg"
    }
}
if {[wants export]} {
    set vlnv "$opt(ip_vendor):$opt(ip_library):${top}:$opt(ip_version)"
    if {[catch {export_design -format ip_catalog -rtl verilog -vendor $opt(ip_vendor) -library $opt(ip_library) \
                    -ipname $top -version $opt(ip_version) -display_name "Tri-Level E-ViT engine" \
                    -description "Layer-wise ViT engine: walks a descriptor list in DDR (hls/README.md)"} msg]} {
        fail "IP export failed: $msg"
    }
    puts "hls.tcl: exported $vlnv to [file join $build ${top}_prj solution impl ip]"
}
exit 0
