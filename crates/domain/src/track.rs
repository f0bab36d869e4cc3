//! Thinning a location track to a point budget while keeping its shape.
//!
//! A year of one phone's history is about 100,000 points; a map needs a few thousand. The
//! store fetches the points of a window in time order and [`simplify`] picks which to keep.
//!
//! The algorithm is Ramer–Douglas–Peucker run top-down against a budget instead of a distance
//! threshold: start with the first and last point, then repeatedly split the segment whose
//! farthest point deviates most, until `max_points` are kept or every remaining point lies on
//! its segment. Splitting the worst segment first means that whatever the budget, the points
//! kept are the ones that matter most.
//!
//! Deviation is the *synchronized Euclidean distance* (SED): the distance between a point and
//! where the phone would have been at that point's time, moving at constant speed along the
//! segment. Plain perpendicular distance keeps turns but drops stops (standing still on the
//! line between two points costs nothing spatially); with SED a stop is a large deviation in
//! time-interpolated position, so its arrival and departure points are kept as well as turns.
//!
//! Distances use an equirectangular projection around each segment's start (metres, scaled by
//! the cosine of the latitude): exact enough at the scale of a track, and cheap.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One point of a track: time (Unix seconds, as OwnTracks' `tst`) and WGS84 position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    pub tst: i64,
    pub lat: f64,
    pub lon: f64,
}

const METRES_PER_DEGREE: f64 = 111_320.0;
/// Deviations below this are rounding noise, not shape: such points are never worth keeping.
const NEGLIGIBLE_METRES: f64 = 0.001;

/// Indices (ascending) of the points of `points` to keep, at most `max_points` of them.
///
/// `points` should be in time order. With at least two points and a budget of at least two,
/// the first and last points are always kept. A budget of 1 keeps the first point, 0 keeps
/// none. Never panics, whatever the input (NaN coordinates count as no deviation).
pub fn simplify(points: &[TrackPoint], max_points: usize) -> Vec<usize> {
    let n = points.len();
    if n <= max_points {
        return (0..n).collect();
    }
    match max_points {
        0 => return Vec::new(),
        1 => return vec![0],
        _ => {}
    }
    let mut keep = vec![false; n];
    keep[0] = true;
    keep[n - 1] = true;
    let mut kept = 2;
    let mut heap = BinaryHeap::new();
    if let Some(split) = farthest(points, 0, n - 1) {
        heap.push(split);
    }
    while kept < max_points {
        let Some(Split {
            at, first, last, ..
        }) = heap.pop()
        else {
            break;
        };
        keep[at] = true;
        kept += 1;
        for (a, b) in [(first, at), (at, last)] {
            if let Some(split) = farthest(points, a, b) {
                heap.push(split);
            }
        }
    }
    keep.iter()
        .enumerate()
        .filter_map(|(i, k)| k.then_some(i))
        .collect()
}

/// A candidate split: the point `at` inside the segment `first..=last` deviating by
/// `deviation` (squared metres).
struct Split {
    deviation: f64,
    at: usize,
    first: usize,
    last: usize,
}

impl PartialEq for Split {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Split {}
impl PartialOrd for Split {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Split {
    /// Largest deviation first; among equals the earliest point, so results are deterministic.
    fn cmp(&self, other: &Self) -> Ordering {
        self.deviation
            .total_cmp(&other.deviation)
            .then_with(|| other.at.cmp(&self.at))
    }
}

/// The point strictly between `first` and `last` that deviates most from the segment, if any
/// deviates at all. Runs for every point at every level of splitting: the per-segment terms
/// are computed once, and points are compared by squared distance (no square root).
fn farthest(points: &[TrackPoint], first: usize, last: usize) -> Option<Split> {
    if last <= first + 1 {
        return None;
    }
    let segment = Segment::new(points[first], points[last]);
    let mut best: Option<Split> = None;
    let mut best_squared = NEGLIGIBLE_METRES * NEGLIGIBLE_METRES;
    for (offset, p) in points[first + 1..last].iter().enumerate() {
        let d = segment.sed_squared(*p);
        // NaN (from NaN input) compares false: such a point never wins.
        if d > best_squared {
            best_squared = d;
            best = Some(Split {
                deviation: d,
                at: first + 1 + offset,
                first,
                last,
            });
        }
    }
    best
}

/// A segment `a`→`b`, prepared for measuring the synchronized Euclidean distance of points.
struct Segment {
    a: TrackPoint,
    /// Degrees per second along the segment (0 for a segment of zero duration).
    lat_rate: f64,
    lon_rate: f64,
    /// Metres per degree of longitude at the segment's start.
    lon_metres: f64,
    /// Seconds from `a` to `b`.
    span: f64,
    /// True for a segment of zero (or negative) duration: its points are compared with the
    /// segment's midpoint.
    zero_span: bool,
    mid: (f64, f64),
}

impl Segment {
    fn new(a: TrackPoint, b: TrackPoint) -> Segment {
        let span = b.tst as f64 - a.tst as f64;
        let zero_span = span <= 0.0 || !span.is_finite();
        let (lat_rate, lon_rate) = if zero_span {
            (0.0, 0.0)
        } else {
            ((b.lat - a.lat) / span, (b.lon - a.lon) / span)
        };
        Segment {
            a,
            lat_rate,
            lon_rate,
            lon_metres: METRES_PER_DEGREE * a.lat.to_radians().cos(),
            span,
            zero_span,
            mid: ((a.lat + b.lat) / 2.0, (a.lon + b.lon) / 2.0),
        }
    }

    /// Squared distance in square metres between `p` and where the segment puts the phone at
    /// `p`'s time (clamped to the segment's ends).
    fn sed_squared(&self, p: TrackPoint) -> f64 {
        let (lat, lon) = if self.zero_span {
            self.mid
        } else {
            // `max`/`min` rather than `clamp`, which panics on NaN bounds.
            let elapsed = (p.tst as f64 - self.a.tst as f64).max(0.0).min(self.span);
            let lat = self.a.lat + self.lat_rate * elapsed;
            let lon = self.a.lon + self.lon_rate * elapsed;
            (lat, lon)
        };
        let dy = (p.lat - lat) * METRES_PER_DEGREE;
        let dx = (p.lon - lon) * self.lon_metres;
        dx * dx + dy * dy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(tst: i64, lat: f64, lon: f64) -> TrackPoint {
        TrackPoint { tst, lat, lon }
    }

    /// A straight walk east at constant speed: every inner point is exactly where it should be.
    fn straight(n: usize) -> Vec<TrackPoint> {
        (0..n)
            .map(|i| p(i as i64 * 10, 52.0, 13.0 + i as f64 * 0.0001))
            .collect()
    }

    #[test]
    fn small_tracks_are_returned_whole() {
        let t = straight(5);
        assert_eq!(simplify(&t, 5), vec![0, 1, 2, 3, 4]);
        assert_eq!(simplify(&t, 100), vec![0, 1, 2, 3, 4]);
        assert_eq!(simplify(&[], 10), Vec::<usize>::new());
    }

    #[test]
    fn tiny_budgets() {
        let t = straight(5);
        assert_eq!(simplify(&t, 0), Vec::<usize>::new());
        assert_eq!(simplify(&t, 1), vec![0]);
        assert_eq!(simplify(&t, 2), vec![0, 4]);
    }

    #[test]
    fn a_straight_constant_speed_track_reduces_to_its_ends() {
        assert_eq!(simplify(&straight(1000), 50), vec![0, 999]);
    }

    #[test]
    fn a_turn_is_kept() {
        // East for 10 points, then north for 10: the corner is the one point that matters.
        let mut t: Vec<_> = (0..10)
            .map(|i| p(i * 10, 52.0, 13.0 + i as f64 * 0.001))
            .collect();
        t.extend((1..10).map(|i| p(90 + i * 10, 52.0 + i as f64 * 0.001, 13.009)));
        assert_eq!(simplify(&t, 3), vec![0, 9, 18]);
    }

    #[test]
    fn a_stop_on_a_straight_line_is_kept() {
        // Moves east, stands still for a long time at the midpoint, moves on east. Spatially a
        // straight line, but the arrival and departure of the stop are what a viewer needs.
        let mut t: Vec<_> = (0..10)
            .map(|i| p(i * 10, 52.0, 13.0 + i as f64 * 0.001))
            .collect();
        t.extend((1..50).map(|i| p(90 + i * 60, 52.0, 13.009)));
        let stop_end = t.len() - 1;
        let resume = t[stop_end].tst;
        t.extend((1..10).map(|i| p(resume + i * 10, 52.0, 13.009 + i as f64 * 0.001)));
        let kept = simplify(&t, 4);
        assert_eq!(kept, vec![0, 9, stop_end, t.len() - 1]);
    }

    #[test]
    fn the_budget_bounds_the_count_and_keeps_the_ends() {
        // A noisy zig-zag where nearly every point deviates.
        let t: Vec<_> = (0..10_000)
            .map(|i| {
                let wiggle = if i % 2 == 0 { 0.001 } else { -0.001 };
                p(
                    i * 30,
                    52.0 + wiggle + (i % 7) as f64 * 0.0003,
                    13.0 + i as f64 * 0.0001,
                )
            })
            .collect();
        for budget in [2, 3, 10, 2000] {
            let kept = simplify(&t, budget);
            assert_eq!(kept.len(), budget);
            assert_eq!(kept.first(), Some(&0));
            assert_eq!(kept.last(), Some(&9_999));
            assert!(
                kept.windows(2).all(|w| w[0] < w[1]),
                "ascending, no repeats"
            );
        }
    }

    #[test]
    fn garbage_input_does_not_panic() {
        let t = vec![
            p(5, f64::NAN, 13.0),
            p(1, 52.0, f64::INFINITY),
            p(1, 52.0, 13.0),
            p(i64::MIN, 91.0, -200.0),
            p(i64::MAX, 0.0, 0.0),
        ];
        let kept = simplify(&t, 3);
        assert!(kept.len() <= 3);
        assert_eq!(kept.first(), Some(&0));
        assert_eq!(kept.last(), Some(&4));
    }
}
