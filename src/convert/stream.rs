pub struct StreamConverter;
impl StreamConverter { pub fn new(_m: &str, _id: &str) -> Self { todo!() } pub fn push(&mut self, _i: &[u8], _e: bool, _o: &mut Vec<u8>) { todo!() } pub fn fail(&mut self, _e: &crate::error::ProxyError, _o: &mut Vec<u8>) { todo!() } pub fn is_finished(&self) -> bool { todo!() } pub fn outcome(&self) -> crate::convert::Outcome { todo!() } }
pub fn write_ping(_o: &mut Vec<u8>) { todo!() }
