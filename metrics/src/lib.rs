//! weft metrics: the mesh-hosted time-series store (filled by the metrics-store issue).
