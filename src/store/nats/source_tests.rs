use super::*;

#[test]
fn a_replay_whose_event_cannot_be_read_comes_again_ever_later_up_to_30s() {
    let waits: Vec<u64> = [0, 1, 2, 3, 4, 5, 6, 7, 100, u32::MAX]
        .into_iter()
        .map(|d| reread_delay(d).as_secs())
        .collect();
    assert_eq!(waits, [1, 1, 2, 4, 8, 16, 30, 30, 30, 30]);
}
