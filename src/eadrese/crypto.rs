//! Inbound decryption as the DIV description gives it: the recipient's
//! `EncryptionInfo.Key` is RSA-OAEP (SHA-1) wrapped `[key length][AES key][IV]`;
//! each file's contents are AES-CBC with PKCS#7 padding, gzipped first when
//! `File.Compressed` is true. The plaintext is checked against the file's
//! SHA-512 digest.

use std::io::Read;

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use rsa::{Oaep, RsaPrivateKey};
use sha2::{Digest, Sha512};

/// Why a message's contents could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error("the wrapped key does not open with our key (RSA-OAEP): {0}")]
    Unwrap(rsa::Error),
    #[error("the unwrapped key material is malformed ({0} bytes)")]
    KeyMaterial(usize),
    #[error("AES-CBC contents do not decrypt (wrong key or padding)")]
    Cipher,
    #[error("gzip contents do not inflate: {0}")]
    Gzip(std::io::Error),
    #[error("the file's SHA-512 digest does not match its contents")]
    Digest,
    #[error("the file is larger than the limit of {0} bytes")]
    TooLarge(u64),
}

/// An AES key and IV unwrapped from `EncryptionInfo.Key`.
pub struct ContentKey {
    key: Vec<u8>,
    iv: [u8; 16],
}

impl std::fmt::Debug for ContentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ContentKey(…)")
    }
}

/// Unwraps `[key length][AES key][IV]` with the institution's private key.
pub fn unwrap_key(private: &RsaPrivateKey, wrapped: &[u8]) -> Result<ContentKey, DecryptError> {
    let plain = private
        .decrypt(Oaep::new::<sha1::Sha1>(), wrapped)
        .map_err(DecryptError::Unwrap)?;
    let Some((&len, rest)) = plain.split_first() else {
        return Err(DecryptError::KeyMaterial(0));
    };
    let len = usize::from(len);
    if !matches!(len, 16 | 24 | 32) || rest.len() != len + 16 {
        return Err(DecryptError::KeyMaterial(plain.len()));
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&rest[len..]);
    Ok(ContentKey {
        key: rest[..len].to_vec(),
        iv,
    })
}

/// AES-CBC with PKCS#7 padding, the AES variant chosen by the key's length.
macro_rules! cbc_decrypt {
    ($aes:ty, $key:expr, $data:expr) => {
        cbc::Decryptor::<$aes>::new_from_slices(&$key.key, &$key.iv)
            .map_err(|_| DecryptError::KeyMaterial($key.key.len()))?
            .decrypt_padded_vec_mut::<Pkcs7>($data)
            .map_err(|_| DecryptError::Cipher)?
    };
}

/// Decrypts (and inflates) one file's contents, at most `limit` bytes,
/// and checks them against `sha512` when the envelope gives it.
pub fn decrypt_file(
    key: &ContentKey,
    contents: &[u8],
    compressed: bool,
    sha512: Option<&[u8]>,
    limit: u64,
) -> Result<Vec<u8>, DecryptError> {
    let data = match key.key.len() {
        16 => cbc_decrypt!(aes::Aes128, key, contents),
        24 => cbc_decrypt!(aes::Aes192, key, contents),
        _ => cbc_decrypt!(aes::Aes256, key, contents),
    };
    let data = if compressed {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(data.as_slice())
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(DecryptError::Gzip)?;
        out
    } else {
        data
    };
    if data.len() as u64 > limit {
        return Err(DecryptError::TooLarge(limit));
    }
    if let Some(want) = sha512
        && Sha512::digest(&data)[..] != *want
    {
        return Err(DecryptError::Digest);
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes::cipher::BlockEncryptMut;
    use rsa::RsaPublicKey;

    #[test]
    fn a_wrapped_key_opens_gzip_contents_and_a_wrong_digest_is_refused() {
        let mut rng = rsa::rand_core::OsRng;
        let private = RsaPrivateKey::new(&mut rng, 1024).expect("key");
        let public = RsaPublicKey::from(&private);
        let (key, iv) = ([7u8; 32], [9u8; 16]);
        let mut material = vec![32u8];
        material.extend_from_slice(&key);
        material.extend_from_slice(&iv);
        let wrapped = public
            .encrypt(&mut rng, Oaep::new::<sha1::Sha1>(), &material)
            .expect("wrap");
        let text = "Iesniegums: ā č ē ģ ī ķ ļ ņ š ū ž".as_bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, text).expect("gzip");
        let zipped = gz.finish().expect("gzip");
        let contents = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv)
            .expect("cbc")
            .encrypt_padded_vec_mut::<Pkcs7>(&zipped);
        let ck = unwrap_key(&private, &wrapped).expect("unwrap");
        let digest = Sha512::digest(text);
        let plain =
            decrypt_file(&ck, &contents, true, Some(&digest[..]), 1 << 20).expect("decrypt");
        assert_eq!(plain, text);
        assert!(matches!(
            decrypt_file(&ck, &contents, true, Some(&[0u8; 64]), 1 << 20),
            Err(DecryptError::Digest)
        ));
        assert!(matches!(
            decrypt_file(&ck, &contents, true, None, 4),
            Err(DecryptError::TooLarge(4))
        ));
    }
}
