"""What the grids say: specs, presets, the sweep that fills them, the Figure 2 report, analysis (κ) and convergence."""
