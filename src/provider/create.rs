//! The create endpoints of each product: the only paths the submit proxy
//! forwards to (an admin caller cannot use the route's key for anything
//! else, such as account or credit endpoints). From the platform's
//! per-product API pages; Veo's 1080p/4K upgrades and Suno's lyrics, WAV
//! and other side products are separate tasks with their own status
//! endpoints, so they are not listed.

use super::product::Product;

impl Product {
    /// `POST` paths that create a task of this product and take `callBackUrl`.
    pub fn create_paths(self) -> &'static [&'static str] {
        match self {
            Product::Runway => &["/api/v1/runway/generate", "/api/v1/runway/extend"],
            Product::Aleph => &["/api/v1/aleph/generate"],
            Product::Veo => &["/api/v1/veo/generate", "/api/v1/veo/extend"],
            Product::Suno => &[
                "/api/v1/generate",
                "/api/v1/generate/extend",
                "/api/v1/generate/upload-cover",
                "/api/v1/generate/upload-extend",
            ],
            Product::FourOImage => &["/api/v1/gpt4o-image/generate"],
            Product::FluxKontext => &["/api/v1/flux/kontext/generate"],
            Product::Market => &["/api/v1/jobs/createTask"],
        }
    }
}
