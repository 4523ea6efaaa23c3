//! Compressors kept and reset instead of made anew: a new one allocates and zeroes its state
//! (hundreds of KB), for every page; and glibc, once it has freed a block that large, keeps
//! blocks of that size on its heap, where the record's long-lived entries fragment it.

use flate2::{Compress, FlushCompress, Status};

/// All of `input` as one stream (a gzip member or raw deflate, as `compressor` was made), by
/// `compressor` reset first.
pub fn compress_all(compressor: &mut Compress, input: &[u8]) -> std::io::Result<Vec<u8>> {
    compressor.reset();
    let mut out = Vec::new();
    loop {
        // Each pass has room to make progress; what does not fit is written by the next.
        out.reserve(input.len() / 4 + 1024);
        let before = (compressor.total_in(), compressor.total_out());
        let read = usize::try_from(before.0).map_or(input.len(), |read| read.min(input.len()));
        if compressor.compress_vec(&input[read..], &mut out, FlushCompress::Finish)? == Status::StreamEnd {
            return Ok(out);
        }
        if (compressor.total_in(), compressor.total_out()) == before {
            return Err(std::io::Error::other("the compressor made no progress"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::Compression;

    use super::*;

    #[test]
    fn one_compressor_compresses_input_after_input_each_whole() {
        let mut gzip = Compress::new_gzip(Compression::fast(), 15);
        let mut deflate = Compress::new(Compression::best(), false);
        // Noise does not compress: its stream outgrows the room first reserved, more than once.
        let noise: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for input in [b"{\"jsons\":[]}".to_vec(), noise, b"a".repeat(100_000), Vec::new()] {
            let (mut gunzipped, mut inflated) = (Vec::new(), Vec::new());
            let gzipped = compress_all(&mut gzip, &input).expect("gzipped");
            flate2::read::GzDecoder::new(&gzipped[..]).read_to_end(&mut gunzipped).expect("a whole gzip member");
            let deflated = compress_all(&mut deflate, &input).expect("deflated");
            flate2::read::DeflateDecoder::new(&deflated[..]).read_to_end(&mut inflated).expect("a whole stream");
            assert_eq!((gunzipped, inflated), (input.clone(), input));
        }
    }
}
