//! The peer mesh (filled by the mesh core engineer).
pub mod driver;
