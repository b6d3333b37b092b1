// Width prelude of teams.wgsl and flash.wgsl (the index prepends it): head dimensions over 128
// and up to 256 (Gemma's 256, for one), with register arrays twice those of dim128.wgsl.
const MAX_D: u32 = 256u;
