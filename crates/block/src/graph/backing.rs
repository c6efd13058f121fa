//! `change-backing-file`: rewriting the backing file name an image's header records.

use super::{BlockGraph, ChildRole, Data, Driver};
use crate::image::{self, ImageFormat};
use crate::nbd::ExportBackend;
use crate::qcow2;
use crate::{Error, Result};

impl BlockGraph {
    /// Records `backing_file` as the backing file name in the header of `image`, an image in
    /// the backing chain of `top` that has a backing file (the graph's backing link stays as it
    /// is, as in QEMU). The format recorded is the backing node's driver.
    pub fn change_backing_file(
        &mut self,
        top: &str,
        image: &str,
        backing_file: &str,
    ) -> Result<()> {
        self.require_node(image)?;
        let Some(backing) = self.child(image, ChildRole::Backing) else {
            return Err(Error::generic(
                "not allowing backing file change on an image without a backing file",
            ));
        };
        if !self.backing_chain(top).iter().any(|n| n == image) {
            return Err(Error::generic(format!(
                "'{top}' and image file are not in the same chain"
            )));
        }
        let node = self.node(image)?;
        if node.driver != Driver::Qcow2 {
            return Err(Error::generic(format!(
                "Could not change the backing file to '{backing_file}': Operation not supported"
            )));
        }
        if let Data::Image(img) = &node.data {
            ExportBackend::flush(&**img)?;
        }
        let path = node.path();
        let format = self.driver(&backing)?.name();
        qcow2::change_backing_file(&path, Some((backing_file, format))).map_err(|e| {
            Error::generic(format!(
                "Could not change the backing file to '{backing_file}': {}",
                e.desc
            ))
        })?;
        // QEMU writes the header's whole cluster again.
        if let Some(c) = image::image_info(&path, Some(ImageFormat::Qcow2))
            .ok()
            .and_then(|i| i.cluster_size)
        {
            if let Some(f) = self.child(image, ChildRole::File) {
                self.note_file_written(&f, c);
            }
        }
        self.set_auto_backing_file(image, Some(backing_file));
        // The open image reads its header again (so nothing writes the old name back).
        self.reopen(image)
    }
}
