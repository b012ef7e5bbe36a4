//! weft IPAM: the address ring CRDT shared by the mesh (filled by the IPAM issue).
