//! One file per op: its uniforms struct, its guards, its GPU encoding and its CPU reference.

pub mod matvec;

/// Splits `groups` workgroups into an (x, y) grid within the per-dimension limit, so 1-D work
/// larger than 65535 groups (a 151936-row vocabulary projection) still dispatches.
pub fn grid_2d(groups: u32, max_per_dim: u32) -> Option<(u32, u32)> {
    if groups == 0 {
        return Some((0, 0));
    }
    let x = groups.min(max_per_dim);
    let y = groups.div_ceil(x);
    (y <= max_per_dim).then_some((x, y))
}

#[cfg(test)]
mod tests {
    use super::grid_2d;

    #[test]
    fn grid_covers_every_group_within_limits() {
        assert_eq!(grid_2d(1, 65535), Some((1, 1)));
        assert_eq!(grid_2d(65535, 65535), Some((65535, 1)));
        assert_eq!(grid_2d(151_936, 65535), Some((65535, 3)));
        assert_eq!(grid_2d(u32::MAX, 16), None);
        let (x, y) = grid_2d(100_003, 1000).unwrap();
        assert!(x * y >= 100_003 && x * (y - 1) < 100_003);
    }
}
