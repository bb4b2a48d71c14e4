"""Engine backends behind one interface: ``csim`` (the C++ engine as a shared library) and
``board`` (the PYNQ overlay on the ZCU102)."""
