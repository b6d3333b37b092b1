// Width prelude of teams.wgsl and flash.wgsl (the index prepends it): the largest head dimension
// their register arrays hold. Head dimensions up to 128 (most models) take this one, whose
// arrays are half those of dim256.wgsl.
const MAX_D: u32 = 128u;
