//! Streaming Reed-Solomon erasure coding of an object into `k` data and `m` parity shards, each
//! of which is an ordinary object with its own id.
//!
//! The object is cut into stripes of `k × piece_size` bytes. Stripe `s` contributes bytes
//! `s × piece_size ..` of every shard: its `k` data pieces are the stripe's consecutive
//! `piece_size`-byte slices, its `m` parity pieces their Reed-Solomon recovery pieces. The last,
//! partial stripe uses a smaller piece, `ceil(rest / k)` rounded up to 64 bytes, zero-padded, so
//! a small object does not cost `(k + m) × piece_size`. All shards have the same length, a
//! function of the object length, `k` and `piece_size` alone.

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use crate::builder::{BuiltObject, Chunk, ObjectBuilder};
use crate::commitment::{SEGMENT_SIZE, manifest_hash};
use crate::id::{ManifestId, ObjectId};
use crate::wire::{DecodeError, Reader};

/// Most shards (`k + m`) an object may be coded into; bounds decoder memory for a manifest
/// received from elsewhere to `MAX_SHARDS × MAX_PIECE_SIZE`.
pub const MAX_SHARDS: usize = 64;
/// Largest piece size.
pub const MAX_PIECE_SIZE: u32 = 1 << 20;
/// Default piece size: 64 KiB, a multiple of the chunk size, so a full stripe of the default
/// 4 + 2 code moves 384 KiB.
pub const DEFAULT_PIECE_SIZE: u32 = 64 * 1024;
const MANIFEST_VERSION: u8 = 1;

/// Why erasure coding, decoding or repair failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ErasureError {
    /// `k` or `m` is zero, or `k + m` exceeds [`MAX_SHARDS`].
    #[error(
        "{data} data + {parity} parity shards: each must be at least 1 and the sum at most {max}"
    )]
    ShardCounts {
        /// Data shards asked for.
        data: u8,
        /// Parity shards asked for.
        parity: u8,
        /// Largest total.
        max: usize,
    },
    /// The piece size is not a multiple of 64 in `64..=MAX_PIECE_SIZE`.
    #[error("piece size {got} must be a multiple of 64 between 64 and {max}")]
    PieceSize {
        /// Piece size asked for.
        got: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A piece names a shard index that does not exist.
    #[error("shard {index} does not exist: the code has {total} shards")]
    UnknownShard {
        /// Index given.
        index: u8,
        /// Shards in the code.
        total: usize,
    },
    /// Two pieces name the same shard.
    #[error("shard {index} given twice")]
    DuplicateShard {
        /// The repeated index.
        index: u8,
    },
    /// A piece does not have the length of the current stripe's pieces.
    #[error("piece of shard {shard} has {got} bytes, the stripe's pieces have {expected}")]
    PieceLength {
        /// Shard index.
        shard: u8,
        /// Piece length of the stripe.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// Fewer than `k` distinct shards were given for a stripe.
    #[error("{got} shards given, reconstruction needs {needed}")]
    NotEnoughShards {
        /// `k`.
        needed: usize,
        /// Distinct valid shards given.
        got: usize,
    },
    /// A stripe was given after the last one.
    #[error("all {stripes} stripes are already decoded")]
    NoStripeLeft {
        /// Stripes in the object.
        stripes: u64,
    },
    /// `finish` was called before every stripe was decoded.
    #[error("{remaining} stripes not decoded yet")]
    StripesRemaining {
        /// Stripes still to go.
        remaining: u64,
    },
    /// The reconstructed bytes do not hash to the manifest's object id.
    #[error("reconstructed object is {got}, the manifest says {expected}")]
    ObjectMismatch {
        /// Object id in the manifest.
        expected: ObjectId,
        /// Id of the reconstructed bytes.
        got: ObjectId,
    },
    /// A rebuilt shard does not hash to the manifest's shard root.
    #[error("rebuilt shard {index} is {got}, the manifest says {expected}")]
    ShardMismatch {
        /// Shard index.
        index: u8,
        /// Shard root in the manifest.
        expected: ObjectId,
        /// Root of the rebuilt bytes.
        got: ObjectId,
    },
    /// The Reed-Solomon library refused its input.
    #[error("Reed-Solomon codec: {0}")]
    Codec(#[from] reed_solomon_simd::Error),
}

/// Code parameters: `k` data shards, `m` parity shards and the piece size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureParams {
    data_shards: u8,
    parity_shards: u8,
    piece_size: u32,
}

impl Default for ErasureParams {
    /// 4 data + 2 parity shards, 64 KiB pieces.
    fn default() -> Self {
        Self {
            data_shards: 4,
            parity_shards: 2,
            piece_size: DEFAULT_PIECE_SIZE,
        }
    }
}

impl ErasureParams {
    /// Checked parameters.
    pub fn new(data_shards: u8, parity_shards: u8, piece_size: u32) -> Result<Self, ErasureError> {
        let total = usize::from(data_shards) + usize::from(parity_shards);
        if data_shards == 0
            || parity_shards == 0
            || total > MAX_SHARDS
            || !ReedSolomonEncoder::supports(data_shards.into(), parity_shards.into())
        {
            return Err(ErasureError::ShardCounts {
                data: data_shards,
                parity: parity_shards,
                max: MAX_SHARDS,
            });
        }
        if piece_size == 0
            || piece_size > MAX_PIECE_SIZE
            || !piece_size.is_multiple_of(SEGMENT_SIZE as u32)
        {
            return Err(ErasureError::PieceSize {
                got: piece_size,
                max: MAX_PIECE_SIZE,
            });
        }
        Ok(Self {
            data_shards,
            parity_shards,
            piece_size,
        })
    }

    /// The spec's scheme by object size (all 1.5× overhead): up to 1 MB (2, 1), up to 100 MB
    /// (4, 2), above (8, 4), with the default piece size. Objects under 4 KB are meant to be
    /// stored inline rather than coded; that choice is the caller's.
    pub fn for_object_size(length: u64) -> Self {
        const MB: u64 = 1_000_000;
        let (data_shards, parity_shards) = match length {
            0..=MB => (2, 1),
            _ if length <= 100 * MB => (4, 2),
            _ => (8, 4),
        };
        Self {
            data_shards,
            parity_shards,
            piece_size: DEFAULT_PIECE_SIZE,
        }
    }

    /// `k`: shards holding the data.
    pub fn data_shards(&self) -> u8 {
        self.data_shards
    }

    /// `m`: parity shards; any `m` shards may be lost.
    pub fn parity_shards(&self) -> u8 {
        self.parity_shards
    }

    /// `k + m`.
    pub fn total_shards(&self) -> usize {
        usize::from(self.data_shards) + usize::from(self.parity_shards)
    }

    /// Bytes each shard receives per full stripe.
    pub fn piece_size(&self) -> u32 {
        self.piece_size
    }

    fn k(&self) -> usize {
        self.data_shards.into()
    }

    fn m(&self) -> usize {
        self.parity_shards.into()
    }

    fn stripe_bytes(&self) -> u64 {
        u64::from(self.data_shards) * u64::from(self.piece_size)
    }

    /// Piece length of a partial last stripe holding `rest` object bytes.
    fn partial_piece(&self, rest: u64) -> u64 {
        rest.div_ceil(self.data_shards.into())
            .div_ceil(SEGMENT_SIZE as u64)
            * SEGMENT_SIZE as u64
    }

    /// Length of every shard of an object of `length` bytes.
    pub fn shard_len(&self, length: u64) -> u64 {
        let full = length / self.stripe_bytes();
        full * u64::from(self.piece_size) + self.partial_piece(length % self.stripe_bytes())
    }

    /// Number of stripes of an object of `length` bytes.
    pub fn stripe_count(&self, length: u64) -> u64 {
        length.div_ceil(self.stripe_bytes())
    }

    /// Where stripe `index` lies in the shards and in the object; `None` past the last one.
    pub fn stripe(&self, length: u64, index: u64) -> Option<Stripe> {
        if index >= self.stripe_count(length) {
            return None;
        }
        let object_offset = index * self.stripe_bytes();
        let data_len = (length - object_offset).min(self.stripe_bytes());
        let piece_len = if data_len == self.stripe_bytes() {
            u64::from(self.piece_size)
        } else {
            self.partial_piece(data_len)
        };
        Some(Stripe {
            index,
            shard_offset: index * u64::from(self.piece_size),
            piece_len: usize::try_from(piece_len).ok()?,
            object_offset,
            data_len: usize::try_from(data_len).ok()?,
        })
    }
}

/// Position of one stripe: which bytes of every shard and of the object it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stripe {
    /// Stripe number, from 0.
    pub index: u64,
    /// Offset of this stripe's piece in every shard.
    pub shard_offset: u64,
    /// Length of this stripe's piece in every shard.
    pub piece_len: usize,
    /// Offset of this stripe in the object.
    pub object_offset: u64,
    /// Object bytes in this stripe (less than `k × piece_len` only for the last one).
    pub data_len: usize,
}

/// One shard's place in a code (§8 item 28 of the protocol notes, plus the shard length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardInfo {
    /// Shard index: `0..k` data, `k..k+m` parity.
    pub index: u8,
    /// `k`.
    pub data_shards: u8,
    /// `m`.
    pub parity_shards: u8,
    /// The shard's object id.
    pub root: ObjectId,
    /// The shard's length in bytes.
    pub length: u64,
}

impl ShardInfo {
    /// Encoded size.
    pub const ENCODED_LEN: usize = 1 + 1 + 1 + 32 + 8;

    /// `index u8 ‖ k u8 ‖ m u8 ‖ root[32] ‖ length u64`.
    pub fn encode(&self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        out[0] = self.index;
        out[1] = self.data_shards;
        out[2] = self.parity_shards;
        out[3..35].copy_from_slice(self.root.as_bytes());
        out[35..].copy_from_slice(&self.length.to_le_bytes());
        out
    }

    /// Parses exactly one encoded shard description and checks `k`, `m` and the index.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        let info = Self::read(&mut reader)?;
        reader.finish("shard info")?;
        Ok(info)
    }

    fn read(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let index = reader.u8("shard index")?;
        let data_shards = reader.u8_in("data shards", 1, MAX_SHARDS as u8 - 1)?;
        let parity_shards = reader.u8_in("parity shards", 1, MAX_SHARDS as u8 - data_shards)?;
        let total = data_shards + parity_shards;
        if index >= total {
            return Err(DecodeError::OutOfRange {
                field: "shard index",
                value: index.into(),
                min: 0,
                max: u64::from(total) - 1,
            });
        }
        let root = ObjectId::from_bytes(reader.array("shard root")?);
        let length = reader.u64("shard length")?;
        Ok(Self {
            index,
            data_shards,
            parity_shards,
            root,
            length,
        })
    }
}

/// Everything needed to reconstruct an object from its shards and to challenge each shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureManifest {
    object: ObjectId,
    length: u64,
    params: ErasureParams,
    shards: Vec<ShardInfo>,
}

impl ErasureManifest {
    /// The coded object's id.
    pub fn object(&self) -> ObjectId {
        self.object
    }

    /// The coded object's length.
    pub fn length(&self) -> u64 {
        self.length
    }

    /// The code's parameters.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// The `k + m` shards, in index order.
    pub fn shards(&self) -> &[ShardInfo] {
        &self.shards
    }

    /// Number of stripes, for the decoding loop.
    pub fn stripe_count(&self) -> u64 {
        self.params.stripe_count(self.length)
    }

    /// Stripe `index`; `None` past the last one.
    pub fn stripe(&self, index: u64) -> Option<Stripe> {
        self.params.stripe(self.length, index)
    }

    /// Domain-separated Blake3 of [`Self::encode`]'s output.
    pub fn id(&self) -> ManifestId {
        ManifestId::from_bytes(manifest_hash(&self.encode()))
    }

    /// `version u8 (1) ‖ object[32] ‖ length u64 ‖ k u8 ‖ m u8 ‖ piece_size u32 ‖ count u8 ‖
    /// count × ShardInfo`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(48 + self.shards.len() * ShardInfo::ENCODED_LEN);
        out.push(MANIFEST_VERSION);
        out.extend_from_slice(self.object.as_bytes());
        out.extend_from_slice(&self.length.to_le_bytes());
        out.push(self.params.data_shards);
        out.push(self.params.parity_shards);
        out.extend_from_slice(&self.params.piece_size.to_le_bytes());
        // At most MAX_SHARDS shards, so the count fits a byte.
        out.push(self.shards.len() as u8);
        for shard in &self.shards {
            out.extend_from_slice(&shard.encode());
        }
        out
    }

    /// Parses one encoded manifest and checks that it is self-consistent: valid parameters, one
    /// shard per index in order, the same `k` and `m` everywhere and the shard length the
    /// layout implies.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader::new(bytes);
        reader.u8_in("manifest version", MANIFEST_VERSION, MANIFEST_VERSION)?;
        let object = ObjectId::from_bytes(reader.array("object id")?);
        let length = reader.u64("object length")?;
        let data_shards = reader.u8_in("data shards", 1, MAX_SHARDS as u8 - 1)?;
        let parity_shards = reader.u8_in("parity shards", 1, MAX_SHARDS as u8 - data_shards)?;
        let piece_size = reader.u32("piece size")?;
        let params = ErasureParams::new(data_shards, parity_shards, piece_size).map_err(|_| {
            DecodeError::OutOfRange {
                field: "piece size",
                value: piece_size.into(),
                min: SEGMENT_SIZE as u64,
                max: MAX_PIECE_SIZE.into(),
            }
        })?;
        let total = params.total_shards();
        let count = reader.u8("shard count")?;
        if usize::from(count) != total {
            return Err(DecodeError::Inconsistent {
                field: "shard count",
                expected: total as u64,
                got: count.into(),
            });
        }
        let shard_len = params.shard_len(length);
        let mut shards = Vec::with_capacity(total);
        for position in 0..count {
            let shard = ShardInfo::read(&mut reader)?;
            let checks = [
                ("shard index", u64::from(position), u64::from(shard.index)),
                (
                    "shard data count",
                    data_shards.into(),
                    shard.data_shards.into(),
                ),
                (
                    "shard parity count",
                    parity_shards.into(),
                    shard.parity_shards.into(),
                ),
                ("shard length", shard_len, shard.length),
            ];
            for (field, expected, got) in checks {
                if expected != got {
                    return Err(DecodeError::Inconsistent {
                        field,
                        expected,
                        got,
                    });
                }
            }
            shards.push(shard);
        }
        reader.finish("erasure manifest")?;
        Ok(Self {
            object,
            length,
            params,
            shards,
        })
    }
}

/// A chunk of one shard, emitted while encoding or repairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardChunk<'a> {
    /// Shard index.
    pub shard: u8,
    /// The chunk, as an [`ObjectBuilder`] over the shard's bytes would emit it.
    pub chunk: Chunk<'a>,
}

/// Streams an object into `k + m` shards, emitting every shard's chunks, and returns the
/// manifest. Memory: one stripe, its parity and `k + m + 1` object builders.
pub struct ErasureEncoder {
    params: ErasureParams,
    stripe: Vec<u8>,
    codec: ReedSolomonEncoder,
    object: ObjectBuilder,
    shards: Vec<ObjectBuilder>,
}

impl std::fmt::Debug for ErasureEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureEncoder")
            .field("params", &self.params)
            .field("length", &self.object.length())
            .finish_non_exhaustive()
    }
}

impl ErasureEncoder {
    /// An encoder for `params`.
    pub fn new(params: ErasureParams) -> Result<Self, ErasureError> {
        let piece = params.piece_size as usize;
        Ok(Self {
            params,
            stripe: Vec::with_capacity(params.k() * piece),
            codec: ReedSolomonEncoder::new(params.k(), params.m(), piece)?,
            object: ObjectBuilder::new(),
            shards: (0..params.total_shards())
                .map(|_| ObjectBuilder::new())
                .collect(),
        })
    }

    /// Feeds the next object bytes; `on_chunk` receives every shard chunk they complete. After
    /// an error the encoder holds an unspecified state and should be dropped.
    pub fn update<E: From<ErasureError>>(
        &mut self,
        mut data: &[u8],
        mut on_chunk: impl FnMut(ShardChunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.object
            .update(data, |_| Ok::<(), std::convert::Infallible>(()))
            .unwrap_or_else(|never| match never {});
        let stripe_bytes = self.params.k() * self.params.piece_size as usize;
        while !data.is_empty() {
            let take = (stripe_bytes - self.stripe.len()).min(data.len());
            let (head, rest) = data.split_at(take);
            self.stripe.extend_from_slice(head);
            data = rest;
            if self.stripe.len() == stripe_bytes {
                self.encode_stripe(self.params.piece_size as usize, &mut on_chunk)?;
            }
        }
        Ok(())
    }

    /// Encodes the partial last stripe, emits the remaining shard chunks and returns the
    /// manifest.
    pub fn finish<E: From<ErasureError>>(
        mut self,
        mut on_chunk: impl FnMut(ShardChunk<'_>) -> Result<(), E>,
    ) -> Result<ErasureManifest, E> {
        if !self.stripe.is_empty() {
            let piece = self.params.partial_piece(self.stripe.len() as u64) as usize;
            self.encode_stripe(piece, &mut on_chunk)?;
        }
        let object = self
            .object
            .finish(|_| Ok::<(), std::convert::Infallible>(()))
            .unwrap_or_else(|never| match never {});
        let mut shards = Vec::with_capacity(self.shards.len());
        for (index, builder) in (0u8..).zip(self.shards) {
            let built = builder.finish(|chunk| {
                on_chunk(ShardChunk {
                    shard: index,
                    chunk,
                })
            })?;
            shards.push(ShardInfo {
                index,
                data_shards: self.params.data_shards,
                parity_shards: self.params.parity_shards,
                root: built.id,
                length: built.length,
            });
        }
        Ok(ErasureManifest {
            object: object.id,
            length: object.length,
            params: self.params,
            shards,
        })
    }

    fn encode_stripe<E: From<ErasureError>>(
        &mut self,
        piece: usize,
        on_chunk: &mut impl FnMut(ShardChunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let k = self.params.k();
        self.stripe.resize(k * piece, 0);
        // Resetting is cheap and clears any shard left over from an earlier failed stripe.
        self.codec
            .reset(k, self.params.m(), piece)
            .map_err(ErasureError::from)?;
        for data_piece in self.stripe.chunks_exact(piece) {
            self.codec
                .add_original_shard(data_piece)
                .map_err(ErasureError::from)?;
        }
        let parity = self.codec.encode().map_err(ErasureError::from)?;
        let pieces = self
            .stripe
            .chunks_exact(piece)
            .chain(parity.recovery_iter());
        for ((index, builder), bytes) in (0u8..).zip(self.shards.iter_mut()).zip(pieces) {
            builder.update(bytes, |chunk| {
                on_chunk(ShardChunk {
                    shard: index,
                    chunk,
                })
            })?;
        }
        drop(parity);
        self.stripe.clear();
        Ok(())
    }
}

/// Restores the `k` data pieces of one stripe from any `k` shards' pieces.
struct StripeRestorer {
    params: ErasureParams,
    codec: ReedSolomonDecoder,
    /// The stripe's data pieces, concatenated.
    data: Vec<u8>,
}

impl StripeRestorer {
    fn new(params: ErasureParams) -> Result<Self, ErasureError> {
        let piece = params.piece_size as usize;
        Ok(Self {
            params,
            codec: ReedSolomonDecoder::new(params.k(), params.m(), piece)?,
            data: Vec::with_capacity(params.k() * piece),
        })
    }

    /// Fills `self.data` with the `k × piece_len` data bytes of the stripe.
    fn restore(&mut self, piece_len: usize, pieces: &[(u8, &[u8])]) -> Result<(), ErasureError> {
        let k = self.params.k();
        let total = self.params.total_shards();
        let mut chosen: Vec<Option<&[u8]>> = vec![None; total];
        let mut distinct = 0;
        for &(index, bytes) in pieces {
            let slot = chosen
                .get_mut(usize::from(index))
                .ok_or(ErasureError::UnknownShard { index, total })?;
            if slot.is_some() {
                return Err(ErasureError::DuplicateShard { index });
            }
            if bytes.len() != piece_len {
                return Err(ErasureError::PieceLength {
                    shard: index,
                    expected: piece_len,
                    got: bytes.len(),
                });
            }
            *slot = Some(bytes);
            distinct += 1;
        }
        if distinct < k {
            return Err(ErasureError::NotEnoughShards {
                needed: k,
                got: distinct,
            });
        }
        self.data.clear();
        let (data_slots, parity_slots) = chosen.split_at(k);
        if data_slots.iter().all(Option::is_some) {
            for bytes in data_slots.iter().flatten() {
                self.data.extend_from_slice(bytes);
            }
            return Ok(());
        }
        self.codec.reset(k, self.params.m(), piece_len)?;
        let mut added = 0;
        for (index, bytes) in data_slots.iter().enumerate() {
            if let Some(bytes) = bytes {
                self.codec.add_original_shard(index, bytes)?;
                added += 1;
            }
        }
        for (index, bytes) in parity_slots.iter().enumerate() {
            if added == k {
                break;
            }
            if let Some(bytes) = bytes {
                self.codec.add_recovery_shard(index, bytes)?;
                added += 1;
            }
        }
        let restored = self.codec.decode()?;
        for (index, given) in data_slots.iter().enumerate() {
            let bytes = match given {
                Some(bytes) => *bytes,
                None => restored
                    .restored_original(index)
                    .ok_or(ErasureError::NotEnoughShards {
                        needed: k,
                        got: distinct,
                    })?,
            };
            self.data.extend_from_slice(bytes);
        }
        Ok(())
    }
}

/// Reconstructs an object stripe by stripe from any `k` of its shards and checks the result
/// against the manifest's object id.
///
/// The caller fetches, for each stripe, the bytes `shard_offset .. shard_offset + piece_len` of
/// at least `k` shards, ideally verifying each shard's chunks against its root as they arrive
/// (see [`VerifiedChunkHashes`](crate::VerifiedChunkHashes)), since a corrupt piece is otherwise
/// only caught by [`ErasureDecoder::finish`].
pub struct ErasureDecoder {
    manifest: ErasureManifest,
    next: u64,
    restorer: StripeRestorer,
    object: ObjectBuilder,
}

impl std::fmt::Debug for ErasureDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureDecoder")
            .field("object", &self.manifest.object)
            .field("next_stripe", &self.next)
            .finish_non_exhaustive()
    }
}

impl ErasureDecoder {
    /// A decoder for the object described by `manifest`.
    pub fn new(manifest: ErasureManifest) -> Result<Self, ErasureError> {
        Ok(Self {
            restorer: StripeRestorer::new(manifest.params)?,
            manifest,
            next: 0,
            object: ObjectBuilder::new(),
        })
    }

    /// The stripe to decode next; `None` when all are done.
    pub fn next_stripe(&self) -> Option<Stripe> {
        self.manifest.stripe(self.next)
    }

    /// Decodes the next stripe from pieces of at least `k` distinct shards, given as
    /// `(shard index, piece)`, and returns its object bytes.
    pub fn decode_stripe(&mut self, pieces: &[(u8, &[u8])]) -> Result<&[u8], ErasureError> {
        let stripe = self.next_stripe().ok_or(ErasureError::NoStripeLeft {
            stripes: self.manifest.stripe_count(),
        })?;
        self.restorer.restore(stripe.piece_len, pieces)?;
        self.next += 1;
        let bytes = self
            .restorer
            .data
            .get(..stripe.data_len)
            .unwrap_or(&self.restorer.data);
        self.object
            .update(bytes, |_| Ok::<(), std::convert::Infallible>(()))
            .unwrap_or_else(|never| match never {});
        Ok(bytes)
    }

    /// Checks that every stripe was decoded and that the bytes hash to the manifest's object.
    pub fn finish(self) -> Result<ObjectId, ErasureError> {
        let stripes = self.manifest.stripe_count();
        if self.next < stripes {
            return Err(ErasureError::StripesRemaining {
                remaining: stripes - self.next,
            });
        }
        let built: BuiltObject = self
            .object
            .finish(|_| Ok::<(), std::convert::Infallible>(()))
            .unwrap_or_else(|never| match never {});
        if built.id != self.manifest.object {
            return Err(ErasureError::ObjectMismatch {
                expected: self.manifest.object,
                got: built.id,
            });
        }
        Ok(built.id)
    }
}

/// Rebuilds one lost shard, stripe by stripe, from any `k` other shards (repair), emitting its
/// chunks and checking the result against the manifest's shard root.
pub struct ShardRebuilder {
    manifest: ErasureManifest,
    target: u8,
    next: u64,
    restorer: StripeRestorer,
    encoder: ReedSolomonEncoder,
    shard: ObjectBuilder,
}

impl std::fmt::Debug for ShardRebuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardRebuilder")
            .field("object", &self.manifest.object)
            .field("target", &self.target)
            .field("next_stripe", &self.next)
            .finish_non_exhaustive()
    }
}

impl ShardRebuilder {
    /// A rebuilder for shard `target` of the object described by `manifest`.
    pub fn new(manifest: ErasureManifest, target: u8) -> Result<Self, ErasureError> {
        let params = manifest.params;
        if usize::from(target) >= params.total_shards() {
            return Err(ErasureError::UnknownShard {
                index: target,
                total: params.total_shards(),
            });
        }
        let piece = params.piece_size as usize;
        Ok(Self {
            restorer: StripeRestorer::new(params)?,
            encoder: ReedSolomonEncoder::new(params.k(), params.m(), piece)?,
            manifest,
            target,
            next: 0,
            shard: ObjectBuilder::new(),
        })
    }

    /// The stripe to rebuild next; `None` when all are done.
    pub fn next_stripe(&self) -> Option<Stripe> {
        self.manifest.stripe(self.next)
    }

    /// Rebuilds the target's piece of the next stripe from pieces of at least `k` distinct
    /// other shards; `on_chunk` receives the shard chunks it completes.
    pub fn rebuild_stripe<E: From<ErasureError>>(
        &mut self,
        pieces: &[(u8, &[u8])],
        mut on_chunk: impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let stripe = self.next_stripe().ok_or(ErasureError::NoStripeLeft {
            stripes: self.manifest.stripe_count(),
        })?;
        self.restorer.restore(stripe.piece_len, pieces)?;
        self.next += 1;
        let k = self.manifest.params.k();
        let target = usize::from(self.target);
        let data = &self.restorer.data;
        if target < k {
            let start = target * stripe.piece_len;
            let piece =
                data.get(start..start + stripe.piece_len)
                    .ok_or(ErasureError::PieceLength {
                        shard: self.target,
                        expected: stripe.piece_len,
                        got: data.len().saturating_sub(start),
                    })?;
            return self.shard.update(piece, on_chunk);
        }
        self.encoder
            .reset(k, self.manifest.params.m(), stripe.piece_len)
            .map_err(ErasureError::from)?;
        for data_piece in data.chunks_exact(stripe.piece_len) {
            self.encoder
                .add_original_shard(data_piece)
                .map_err(ErasureError::from)?;
        }
        let parity = self.encoder.encode().map_err(ErasureError::from)?;
        let piece = parity
            .recovery(target - k)
            .ok_or(ErasureError::UnknownShard {
                index: self.target,
                total: self.manifest.params.total_shards(),
            })?;
        self.shard.update(piece, &mut on_chunk)
    }

    /// Emits the shard's last chunk and checks the rebuilt shard against the manifest.
    pub fn finish<E: From<ErasureError>>(
        self,
        on_chunk: impl FnMut(Chunk<'_>) -> Result<(), E>,
    ) -> Result<ShardInfo, E> {
        let stripes = self.manifest.stripe_count();
        if self.next < stripes {
            return Err(ErasureError::StripesRemaining {
                remaining: stripes - self.next,
            }
            .into());
        }
        let built = self.shard.finish(on_chunk)?;
        let expected = self
            .manifest
            .shards
            .get(usize::from(self.target))
            .copied()
            .ok_or(ErasureError::UnknownShard {
                index: self.target,
                total: self.manifest.params.total_shards(),
            })?;
        if built.id != expected.root || built.length != expected.length {
            return Err(ErasureError::ShardMismatch {
                index: self.target,
                expected: expected.root,
                got: built.id,
            }
            .into());
        }
        Ok(expected)
    }
}

#[cfg(test)]
mod tests;
