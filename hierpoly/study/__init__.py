"""What the grids say: specs, presets, the sweep that fills them, the Figure 2 report, per-cell statistics
(cell_stats), κ (crossings, kappa_fit, exponents) and convergence."""
