// Package objstore is the local cloud's S3-compatible object store: buckets of
// objects kept as files under one directory, served over the S3 REST API in
// path style (/bucket and /bucket/key) so that the official AWS SDKs, the
// transfer manager and the AWS CLI work against it unmodified, and used
// in-process through a small Go API by the local cloud, the demo and tests.
//
// What it offers is what a FOTA user touches: buckets, PutObject (plain,
// Content-MD5, the SDK's x-amz-checksum-* headers, and aws-chunked bodies
// with trailing checksums or signed chunks), multipart uploads, GetObject and
// HeadObject with Range, If-Range, If-Match and If-None-Match (served by
// http.ServeContent straight from the file, or by part number),
// ListObjectsV2 and ListObjects, DeleteObject(s), presigned URLs and, as in
// the seed's procedure, buckets made publicly readable. Every request must
// carry a valid SigV4 signature (header or presigned query) except anonymous
// reads of objects in a public bucket. What a FOTA flow does not need
// (versioning, ACLs, policies, tagging, CopyObject, ListParts,
// ListMultipartUploads, SigV4a) is answered 501 NotImplemented.
//
// Durability: an object's bytes are streamed to a temporary file while being
// hashed (never held in memory), fsynced, renamed into the bucket directory,
// and only then is its metadata record written (temp file, fsync, rename,
// fsync of the directory). The metadata record is the commit point: a crash
// at any moment leaves either the old object or the new one visible, never
// half of one, and Open removes what an interrupted write left behind.
// One process at a time may use a directory.
//
// Layout of Config.Dir:
//
//	<bucket>/bucket.json              bucket record (creation time, public flag)
//	<bucket>/o-<sha256(key)>.json     object record: key, size, ETag, hashes, data file
//	<bucket>/d-<sha256(key)>-<gen>    object bytes
//	.uploads/<upload id>/             multipart uploads in progress (upload.json, parts)
//	.tmp/, .trash/                    scratch space, emptied by Open
//
// The package imports only the standard library, cloud/sigv4, clock and
// atomicfile (durable writes). Like every cloud/* package it must
// never import device/* or sim/.
package objstore
