"""Domain corpora and MoDE training: stage 1 experts and stage 2 composition (needs `edgemode[export]`)."""
