//! Guest memory to files: memsave (virtual addresses), pmemsave (physical addresses).

use qmpkit_qapi::Empty;

use super::R;
use crate::api;
use crate::memory;
use crate::{Cx, Machine};

pub fn memsave(m: &mut Machine, a: api::Memsave, _: &mut Cx) -> R<Empty> {
    let cpu_index = a.cpu_index.unwrap_or(0);
    memory::memsave(m, a.val as u64, a.size, &a.filename, cpu_index).map(|()| Empty)
}

pub fn pmemsave(m: &mut Machine, a: api::Pmemsave, _: &mut Cx) -> R<Empty> {
    memory::pmemsave(m, a.val as u64, a.size, &a.filename).map(|()| Empty)
}
