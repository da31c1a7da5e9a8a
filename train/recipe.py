"""The default training recipe: what `train-expert`, `compose` and `edgemode demo` run unless told
otherwise. Chosen by the A/Bs in docs/QUALITY.md; kept free of torch so the CLI can show it in --help."""

EXPERT_STEPS = 40  # `make demo` within 30 minutes on a 2-core AVX2 machine (docs/QUALITY.md)
LR = 1e-3  # AdamW's rate for the experts' layers: the best held-out plus unseen gain of those tried (docs/QUALITY.md)
GATE_LR = 3e-3  # ... and for the gates: a few thousand weights that must move far in few steps
COMPOSE_STEPS = 10
REHEARSAL = ("none", "uniform", "mix-cd")  # stage 1: how general-text rows are chosen
DEFAULT_REHEARSAL = "mix-cd"
DEFAULT_HIGH_FIRST = 0.0  # stage 2: fraction of steps on the high-resource domains first
THREADS = 2  # torch's reductions split by thread count: another count gives other (equally good) bits
