use proptest::prelude::*;

use super::*;

/// A layout using every kind of field, as the records in the other crates do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    tag: u8,
    flag: bool,
    short: u16,
    medium: u32,
    long: u64,
    id: [u8; 4],
    name: String,
    blob: Vec<u8>,
    big: Vec<u8>,
    maybe: Option<u32>,
    items: Vec<u16>,
}

const MAX_NAME: usize = 16;
const MAX_BLOB: usize = 32;
const MAX_BIG: usize = 1000;
const MAX_ITEMS: usize = 8;

impl Sample {
    fn example() -> Self {
        Sample {
            tag: 7,
            flag: true,
            short: 0x0102,
            medium: 0x0304_0506,
            long: 0x0708_090a_0b0c_0d0e,
            id: [1, 2, 3, 4],
            name: "héllo".into(),
            blob: vec![9; 5],
            big: vec![8; 40],
            maybe: Some(3),
            items: vec![10, 20, 30],
        }
    }

    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.tag);
        w.bool(self.flag);
        w.u16(self.short);
        w.u32(self.medium);
        w.u64(self.long);
        w.raw(&self.id);
        w.str16(&self.name);
        w.bytes16(&self.blob);
        w.bytes32(&self.big);
        w.option(self.maybe, Writer::u32);
        w.count16(self.items.len());
        for item in &self.items {
            w.u16(*item);
        }
        w.into_bytes()
    }

    fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new("sample", bytes);
        let tag = r.u8()?;
        let flag = r.bool("flag")?;
        let short = r.u16()?;
        let medium = r.u32()?;
        let long = r.u64()?;
        let id = r.array()?;
        let name = r.str16("name", MAX_NAME)?.to_owned();
        let blob = r.bytes16("blob", MAX_BLOB)?.to_vec();
        let big = r.bytes32("big", MAX_BIG)?.to_vec();
        let maybe = r.option("maybe", Reader::u32)?;
        let n = r.count16("items", MAX_ITEMS, 2)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(r.u16()?);
        }
        r.finish()?;
        Ok(Sample {
            tag,
            flag,
            short,
            medium,
            long,
            id,
            name,
            blob,
            big,
            maybe,
            items,
        })
    }
}

#[test]
fn integers_are_little_endian() {
    let bytes = Sample::example().encode();
    assert_eq!(
        &bytes[..17],
        [
            7, 1, 0x02, 0x01, 0x06, 0x05, 0x04, 0x03, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0x09, 0x08,
            0x07, 1
        ]
    );
}

#[test]
fn every_field_round_trips() {
    let sample = Sample::example();
    assert_eq!(Sample::decode(&sample.encode()).unwrap(), sample);
    let empty = Sample {
        name: String::new(),
        blob: Vec::new(),
        big: Vec::new(),
        maybe: None,
        items: Vec::new(),
        ..sample
    };
    assert_eq!(Sample::decode(&empty.encode()).unwrap(), empty);
}

#[test]
fn every_truncation_is_a_truncation_error_at_its_field() {
    let bytes = Sample::example().encode();
    for len in 0..bytes.len() {
        match Sample::decode(&bytes[..len]) {
            Err(WireError {
                what: "sample",
                kind:
                    ErrorKind::Truncated {
                        offset,
                        needed,
                        left,
                    },
            }) => {
                assert!(offset <= len, "cut at {len}: field at {offset}");
                assert_eq!(left, len - offset, "cut at {len}");
                assert!(needed > left, "cut at {len}");
            }
            other => panic!("cut at {len}: {other:?}"),
        }
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = Sample::example().encode();
    let end = bytes.len();
    bytes.extend_from_slice(&[0, 0]);
    assert_eq!(
        Sample::decode(&bytes).unwrap_err().kind,
        ErrorKind::Trailing {
            offset: end,
            extra: 2
        }
    );
}

#[test]
fn lengths_over_the_field_maximum_are_refused_before_reading() {
    // A u16 length of 65 535 for a 32-byte field, with nothing behind it.
    let mut r = Reader::new("t", &[0xff, 0xff]);
    assert_eq!(
        r.bytes16("blob", MAX_BLOB).unwrap_err().kind,
        ErrorKind::OverLimit {
            field: "blob",
            limit: MAX_BLOB,
            actual: 0xffff
        }
    );
    // A u32 length of 4 GiB: refused by its maximum, nothing is allocated.
    let mut r = Reader::new("t", &[0xff, 0xff, 0xff, 0xff, 1]);
    assert!(matches!(
        r.bytes32("big", MAX_BIG).unwrap_err().kind,
        ErrorKind::OverLimit {
            actual: 0xffff_ffff,
            ..
        }
    ));
    // Within the maximum but longer than the input: truncated.
    let mut r = Reader::new("t", &[10, 0, 1, 2]);
    assert_eq!(
        r.bytes16("blob", MAX_BLOB).unwrap_err().kind,
        ErrorKind::Truncated {
            offset: 2,
            needed: 10,
            left: 2
        }
    );
}

#[test]
fn counts_the_input_cannot_hold_are_refused_before_allocating() {
    // 60 000 elements of at least 8 bytes claimed by 10 bytes of input.
    let mut bytes = 60_000u16.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 8]);
    let mut r = Reader::new("t", &bytes);
    assert_eq!(
        r.count16("items", usize::MAX, 8).unwrap_err().kind,
        ErrorKind::Truncated {
            offset: 2,
            needed: 480_000,
            left: 8
        }
    );
    // Over the field's maximum.
    let mut r = Reader::new("t", &[9, 0]);
    assert!(matches!(
        r.count16("items", 8, 1).unwrap_err().kind,
        ErrorKind::OverLimit {
            limit: 8,
            actual: 9,
            ..
        }
    ));
    // A zero minimum length counts as one byte per element.
    let mut r = Reader::new("t", &[3, 0, 0]);
    assert!(r.count8("items", 10, 0).is_err());
    let mut r = Reader::new("t", &[2, 0, 0]);
    assert_eq!(r.count8("items", 10, 0).unwrap(), 2);
    // An element count that fits exactly is accepted.
    let mut r = Reader::new("t", &[2, 0, 1, 1, 2, 2]);
    assert_eq!(r.count16("items", 8, 2).unwrap(), 2);
}

#[test]
fn booleans_and_presence_bytes_accept_only_zero_and_one() {
    assert!(!Reader::new("t", &[0]).bool("b").unwrap());
    assert!(Reader::new("t", &[1]).bool("b").unwrap());
    assert_eq!(
        Reader::new("t", &[2]).bool("b").unwrap_err(),
        WireError::new(
            "t",
            ErrorKind::NotBool {
                field: "b",
                value: 2
            }
        )
    );
    assert!(
        Reader::new("t", &[0xff, 1, 0, 0, 0])
            .option("o", Reader::u32)
            .is_err()
    );
    assert_eq!(
        Reader::new("t", &[0]).option("o", Reader::u32).unwrap(),
        None
    );
}

#[test]
fn strings_must_be_utf8() {
    let mut r = Reader::new("t", &[2, 0, 0xff, 0xfe]);
    assert_eq!(
        r.str16("s", 16).unwrap_err().kind,
        ErrorKind::NotUtf8 { field: "s" }
    );
}

#[test]
fn fixed_lengths_and_size_limits() {
    assert!(expect_len("t", &[0; 4], 4).is_ok());
    assert_eq!(
        expect_len("t", &[0; 3], 4).unwrap_err().kind,
        ErrorKind::Length {
            expected: 4,
            actual: 3
        }
    );
    assert!(check_size("t", &[0; 4], 4).is_ok());
    assert_eq!(
        check_size("t", &[0; 5], 4).unwrap_err().kind,
        ErrorKind::TooLarge {
            limit: 4,
            actual: 5
        }
    );
}

#[test]
fn errors_name_the_layout_and_the_place() {
    let err = Reader::new("stored channel", &[1]).u32().unwrap_err();
    assert_eq!(
        err.to_string(),
        "stored channel: truncated at byte 0: 4 bytes needed, 1 left"
    );
}

#[test]
fn rest_takes_everything_left_and_take_never_overflows() {
    let mut r = Reader::new("t", &[1, 2, 3]);
    assert_eq!(r.u8().unwrap(), 1);
    assert_eq!(r.rest(), &[2, 3]);
    assert_eq!(r.remaining(), 0);
    assert_eq!(r.offset(), 3);
    assert!(r.take(usize::MAX).is_err());
    r.finish().unwrap();
}

#[test]
fn writers_cap_over_long_fields_so_the_rest_stays_in_place() {
    let mut w = Writer::new();
    w.bytes16(&vec![1; 70_000]);
    w.u8(0xaa);
    let bytes = w.into_bytes();
    assert_eq!(bytes.len(), 2 + 65_535 + 1);
    let mut r = Reader::new("t", &bytes);
    assert_eq!(r.bytes16("b", usize::MAX).unwrap().len(), 65_535);
    assert_eq!(r.u8().unwrap(), 0xaa);

    let text = "é".repeat(40_000); // 80 000 bytes
    let mut w = Writer::new();
    w.str16(&text);
    let bytes = w.into_bytes();
    let mut r = Reader::new("t", &bytes);
    let read = r.str16("s", usize::MAX).unwrap();
    assert_eq!(read.len(), 65_534);
    r.finish().unwrap();

    let mut w = Writer::with_capacity(4);
    assert!(w.is_empty());
    w.count8(300);
    w.count16(70_000);
    assert_eq!(w.len(), 3);
    assert_eq!(w.into_bytes(), [255, 255, 255]);
}

#[test]
fn utf8_prefix_cuts_on_a_character_boundary() {
    assert_eq!(utf8_prefix("héllo", 2), "h");
    assert_eq!(utf8_prefix("héllo", 3), "hé");
    assert_eq!(utf8_prefix("héllo", 100), "héllo");
    assert_eq!(utf8_prefix("é", 0), "");
}

fn sample() -> impl Strategy<Value = Sample> {
    (
        any::<(u8, bool, u16, u32, u64, [u8; 4])>(),
        "\\PC{0,5}",
        proptest::collection::vec(any::<u8>(), 0..=MAX_BLOB),
        proptest::collection::vec(any::<u8>(), 0..200),
        any::<Option<u32>>(),
        proptest::collection::vec(any::<u16>(), 0..=MAX_ITEMS),
    )
        .prop_map(
            |((tag, flag, short, medium, long, id), name, blob, big, maybe, items)| Sample {
                tag,
                flag,
                short,
                medium,
                long,
                id,
                name,
                blob,
                big,
                maybe,
                items,
            },
        )
}

proptest! {
    #[test]
    fn any_sample_round_trips(sample in sample()) {
        prop_assume!(sample.name.len() <= MAX_NAME);
        prop_assert_eq!(Sample::decode(&sample.encode()).unwrap(), sample);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Sample::decode(&bytes);
    }

    #[test]
    fn a_flipped_byte_never_panics(sample in sample(), at in any::<usize>(), flip in 1u8..) {
        let mut bytes = sample.encode();
        let at = at % bytes.len();
        bytes[at] ^= flip;
        let _ = Sample::decode(&bytes);
    }
}
