//! The CPU floor of a drain on the machine it runs on, for `make bench`: a bare client that
//! only follows GitHub's `rel="next"` links and posts each page to the intake, parsed into
//! events, escaped into an intake body and gzipped as the connector does, with none of its
//! bookkeeping (no delivered record, no checkpoint, no sweep, no retry). The connector's CPU
//! per event is read against it: on a loopback with the simulator beside it, most of either is
//! the kernel's work for the two requests a page.
//!
//!     cpu_floor FIRST_PAGE_URL INTAKE_BATCH_URL      (GITHUB_TOKEN, SEKOIA_INTAKE_KEY set)
//!
//! Prints the number of events it forwarded.

use flate2::{Compress, Compression};
use github_audit_sekoia::compression::compress_all;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, LINK};
use serde_json::value::RawValue;

type Error = Box<dyn std::error::Error>;

/// The `rel="next"` link, parsed as the connector parses it.
fn next_link(link: &str) -> Option<String> {
    parse_link_header::parse_with_rel(link).ok()?.remove("next").map(|next| next.raw_uri)
}

/// The intake body, gzipped by `gzip` as the connector's are.
fn intake_body(gzip: &mut Compress, key: &str, events: &[&RawValue]) -> Result<Vec<u8>, Error> {
    let mut body = br#"{"intake_key":"#.to_vec();
    serde_json::to_writer(&mut body, key)?;
    body.extend_from_slice(br#","jsons":["#);
    for (n, event) in events.iter().enumerate() {
        if n > 0 {
            body.push(b',');
        }
        serde_json::to_writer(&mut body, event.get())?;
    }
    body.extend_from_slice(b"]}");
    Ok(compress_all(gzip, &body)?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let (Some(mut url), Some(intake)) = (args.next(), args.next()) else {
        return Err("usage: cpu_floor FIRST_PAGE_URL INTAKE_BATCH_URL".into());
    };
    let token = format!("Bearer {}", std::env::var("GITHUB_TOKEN")?);
    let key = std::env::var("SEKOIA_INTAKE_KEY")?;
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let mut gzip = Compress::new_gzip(Compression::fast(), 15);
    let mut forwarded = 0;
    loop {
        let page = client.get(&url).header(AUTHORIZATION, &token).send().await?.error_for_status()?;
        let next = page.headers().get(LINK).and_then(|link| link.to_str().ok()).and_then(next_link);
        let bytes = page.bytes().await?;
        let events: Vec<&RawValue> = serde_json::from_slice(&bytes)?;
        let body = intake_body(&mut gzip, &key, &events)?;
        client
            .post(&intake)
            .header(CONTENT_TYPE, "application/json")
            .header(CONTENT_ENCODING, "gzip")
            .body(body)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        forwarded += events.len();
        match next {
            Some(next) if !events.is_empty() => url = next,
            _ => break,
        }
    }
    println!("{forwarded}");
    Ok(())
}
