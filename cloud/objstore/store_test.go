package objstore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/awsfota/awsfota/clock"
	"github.com/awsfota/awsfota/cloud/sigv4"
)

func openStore(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Config{Dir: dir, Credentials: []sigv4.Credentials{testCreds}, Clock: clock.NewFake(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

// TestRestart closes a store and opens the same directory again: buckets,
// objects, their metadata and the public flag survive; what an interrupted
// write left behind is removed and never shows.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	for _, b := range []string{"alpha", "beta-1"} {
		if err := s.CreateBucket(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPublicRead("beta-1", true); err != nil {
		t.Fatal(err)
	}
	big := randomBytes(9, 2<<20)
	infos := map[string]ObjectInfo{
		"a/b/c.bin":                    mustPut(t, s, "alpha", "a/b/c.bin", big),
		"../escape":                    mustPut(t, s, "alpha", "../escape", []byte("dots are just bytes")),
		"replaced":                     mustPut(t, s, "alpha", "replaced", []byte("old")),
		strings.Repeat("k", MaxKeyLen): mustPut(t, s, "alpha", strings.Repeat("k", MaxKeyLen), []byte("long key")),
	}
	infos["replaced"] = mustPut(t, s, "alpha", "replaced", []byte("new"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stat("alpha", "replaced"); !errors.Is(err, ErrClosed) {
		t.Errorf("Stat after Close: %v", err)
	}

	// What a crash can leave: a spooled body, a data file whose record was
	// never written, a record's temporary file, a half-built bucket.
	junk := []string{
		filepath.Join(dir, ".tmp", "body-123"),
		filepath.Join(dir, "alpha", "d-"+keyID("ghost")+"-0011223344556677"),
		filepath.Join(dir, "alpha", metaFile("ghost")+".tmp-99"),
		filepath.Join(dir, ".tmp", "bucket-1", "bucket.json"),
	}
	for _, j := range junk {
		os.MkdirAll(filepath.Dir(j), 0o755)
		if err := os.WriteFile(j, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	s = openStore(t, dir)
	defer s.Close()
	bs, err := s.Buckets()
	if err != nil || len(bs) != 2 || bs[0].Name != "alpha" || bs[1].Name != "beta-1" || bs[0].PublicRead || !bs[1].PublicRead {
		t.Fatalf("buckets after restart: %+v %v", bs, err)
	}
	for key, want := range infos {
		got, err := s.Stat("alpha", key)
		if err != nil || got != want {
			t.Errorf("Stat(%.20q) after restart = %+v, %v; want %+v", key, got, err, want)
		}
	}
	obj, info, err := s.Open("alpha", "a/b/c.bin")
	if err != nil {
		t.Fatal(err)
	}
	back := readAll(t, obj)
	tail := make([]byte, 10)
	if _, err := obj.ReadAt(tail, info.Size-10); err != nil {
		t.Fatal(err)
	}
	obj.Close()
	if !bytes.Equal(back, big) || !bytes.Equal(tail, big[len(big)-10:]) {
		t.Error("object content changed across the restart")
	}
	if obj, _, err := s.Open("alpha", "replaced"); err != nil || string(readAll(t, obj)) != "new" {
		t.Errorf("replaced object: %v", err)
	} else {
		obj.Close()
	}
	for _, j := range junk {
		if _, err := os.Stat(j); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s survived Open", j)
		}
	}
	// Exactly one data file per object: replaced data was removed.
	data, _ := filepath.Glob(filepath.Join(dir, "alpha", "d-*"))
	if len(data) != len(infos) {
		t.Errorf("%d data files for %d objects: %v", len(data), len(infos), data)
	}
}

func TestGoAPI(t *testing.T) {
	s := openStore(t, t.TempDir())
	defer s.Close()
	if err := s.CreateBucket("fota"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateBucket("fota"); !errors.Is(err, ErrBucketExists) {
		t.Errorf("second CreateBucket: %v", err)
	}
	if err := s.CreateBucket("Upper"); !errors.Is(err, ErrInvalidBucketName) || !strings.Contains(err.Error(), "lower-case") {
		t.Errorf("CreateBucket(Upper): %v", err)
	}
	cx := context.Background()
	if _, err := s.Put(cx, "nope", "k", strings.NewReader("x")); !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("Put into a missing bucket: %v", err)
	}
	if _, err := s.Put(cx, "fota", "", strings.NewReader("x")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Put with an empty key: %v", err)
	}
	if _, err := s.Put(cx, "fota", strings.Repeat("x", MaxKeyLen+1), strings.NewReader("x")); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Put with a long key: %v", err)
	}
	// Not UTF-8: JSON would store U+FFFD and the object would be lost at
	// the next Open.
	if _, err := s.Put(cx, "fota", "h\xff", strings.NewReader("x")); !errors.Is(err, ErrInvalidKey) || answerFor(err).code != "InvalidURI" {
		t.Errorf("Put with a key that is not UTF-8: %v", err)
	}
	if _, err := s.Presign("http://127.0.0.1:1", "fota", "h\xff", time.Minute); !errors.Is(err, ErrInvalidKey) {
		t.Errorf("Presign with a key that is not UTF-8: %v", err)
	}
	info := mustPut(t, s, "fota", "img", []byte("version one"))
	if info.ContentType != DefaultContentType || info.ETag != quotedMD5([]byte("version one")) || info.SHA256 != sum256([]byte("version one")) ||
		!info.LastModified.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("ObjectInfo %+v", info)
	}

	// A failing reader or a canceled context leaves the old object intact
	// and nothing half-written.
	boom := errors.New("network gone")
	_, err := s.Put(cx, "fota", "img", io.MultiReader(strings.NewReader("version two, partial"), errReader{boom}))
	if !errors.Is(err, boom) {
		t.Errorf("Put with a failing reader: %v", err)
	}
	canceled, cancel := context.WithCancel(cx)
	cancel()
	if _, err := s.Put(canceled, "fota", "img", strings.NewReader("version three")); !errors.Is(err, context.Canceled) {
		t.Errorf("Put with a canceled context: %v", err)
	}
	obj, got, err := s.Open("fota", "img")
	if err != nil || string(readAll(t, obj)) != "version one" || got != info {
		t.Errorf("after failed puts: %+v %v", got, err)
	}
	obj.Close()
	if tmp, _ := os.ReadDir(s.tmpDir()); len(tmp) != 0 {
		t.Errorf("temporary files left: %v", tmp)
	}

	// An object opened before it is replaced or deleted still reads as it was.
	old, _, err := s.Open("fota", "img")
	if err != nil {
		t.Fatal(err)
	}
	mustPut(t, s, "fota", "img", []byte("version four"))
	if err := s.DeleteBucket("fota"); !errors.Is(err, ErrBucketNotEmpty) {
		t.Errorf("DeleteBucket of a full bucket: %v", err)
	}
	if err := s.Delete("fota", "img"); err != nil {
		t.Fatal(err)
	}
	if string(readAll(t, old)) != "version one" {
		t.Error("an open object changed under its reader")
	}
	old.Close()
	if err := s.Delete("fota", "img"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("second Delete: %v", err)
	}
	if _, err := s.Stat("fota", "img"); !errors.Is(err, ErrNoSuchKey) {
		t.Errorf("Stat after Delete: %v", err)
	}
	if _, _, err := s.Open("nope", "img"); !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("Open in a missing bucket: %v", err)
	}
	if err := s.DeleteBucket("fota"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteBucket("fota"); !errors.Is(err, ErrNoSuchBucket) {
		t.Errorf("second DeleteBucket: %v", err)
	}
	if _, err := Open(Config{}); err == nil {
		t.Error("Open without a directory succeeded")
	}
}

// TestLoadProblems damages records the ways a crash, an older version or a
// hand edit can: Open serves what is sound and reports every record it
// could not load, with why, and keeps the data files a damaged record may
// point to.
func TestLoadProblems(t *testing.T) {
	dir := t.TempDir()
	s := openStore(t, dir)
	if err := s.CreateBucket("fota"); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"good", "renamed", "garbled", "no-data"} {
		mustPut(t, s, "fota", k, []byte("bytes of "+k))
	}
	s.Close()
	bdir := filepath.Join(dir, "fota")
	// What an older version stored for a key that was not UTF-8: the
	// record holds U+FFFD, so its key no longer hashes to its file name.
	rec, renamed := filepath.Join(bdir, metaFile("renamed")), &objectMeta{}
	if err := readJSON(rec, renamed); err != nil {
		t.Fatal(err)
	}
	renamed.Key = "h\ufffd"
	if err := writeJSONAtomic(rec, renamed); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bdir, metaFile("garbled")), []byte(`{"key":`), 0o644); err != nil {
		t.Fatal(err)
	}
	noData := &objectMeta{}
	if err := readJSON(filepath.Join(bdir, metaFile("no-data")), noData); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(bdir, noData.Data)); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir)
	defer s.Close()
	if _, err := s.Stat("fota", "good"); err != nil {
		t.Errorf("the sound object is not served: %v", err)
	}
	problems := s.LoadProblems()
	want := map[string]string{
		metaFile("renamed"): "does not hash to its file name",
		metaFile("garbled"): "unreadable",
		metaFile("no-data"): "data file " + noData.Data + " is missing",
	}
	if len(problems) != len(want) {
		t.Fatalf("%d problems, want %d: %v", len(problems), len(want), problems)
	}
	for _, p := range problems {
		why, ok := want[filepath.Base(p.File)]
		if !ok || p.Bucket != "fota" || !strings.Contains(p.Reason, why) || !strings.Contains(p.String(), p.File) {
			t.Errorf("problem %v; want one of %v", p, want)
		}
	}
	// The damaged records' data files are kept: they may hold the bytes.
	data, _ := filepath.Glob(filepath.Join(bdir, "d-*"))
	if len(data) != 3 {
		t.Errorf("data files after a damaged load: %v", data)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestValidateBucketName(t *testing.T) {
	for _, ok := range []string{"abc", "fota-images", "a.b.c", "my-bucket-2026", "0abc", strings.Repeat("a", 63)} {
		if err := ValidateBucketName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "ab", strings.Repeat("a", 64), "Abc", "a_b", "-abc", "abc-", ".abc", "a..b",
		"192.168.1.1", "xn--abc", "sthree-x", "amzn-s3-demo-x", "abc-s3alias", "abc--ol-s3", "abc.mrap", "abc--x-s3", "abc--table-s3", "a b c", "ab/c"} {
		err := ValidateBucketName(bad)
		if !errors.Is(err, ErrInvalidBucketName) {
			t.Errorf("%q accepted: %v", bad, err)
		}
	}
}

func TestListPages(t *testing.T) {
	b := &bucket{objects: map[string]*objectMeta{}}
	keys := []string{"a", "a/", "a/1", "a/2/x", "a/2/y", "a/3", "b", "b/1", "c/d/e", "d"}
	for _, k := range keys {
		b.set(&objectMeta{Key: k})
	}
	type page struct{ objects, prefixes string }
	collect := func(p listParams) []page {
		var out []page
		for i := 0; i < 100; i++ {
			l := b.list(p)
			var ks []string
			for _, m := range l.objects {
				ks = append(ks, m.Key)
			}
			out = append(out, page{strings.Join(ks, ","), strings.Join(l.prefixes, ",")})
			if !l.truncated {
				return out
			}
			p.after = l.last
			p.afterIsPrefix = len(l.prefixes) > 0 && l.prefixes[len(l.prefixes)-1] == l.last
		}
		t.Fatal("listing does not end")
		return nil
	}
	cases := []struct {
		p    listParams
		want []page
	}{
		{listParams{max: 1000}, []page{{strings.Join(keys, ","), ""}}},
		{listParams{delimiter: "/", max: 1000}, []page{{"a,b,d", "a/,b/,c/"}}},
		{listParams{delimiter: "/", max: 2}, []page{{"a", "a/"}, {"b", "b/"}, {"d", "c/"}}},
		{listParams{prefix: "a/", delimiter: "/", max: 1}, []page{{"a/", ""}, {"a/1", ""}, {"", "a/2/"}, {"a/3", ""}}},
		{listParams{prefix: "a/", max: 2}, []page{{"a/,a/1", ""}, {"a/2/x,a/2/y", ""}, {"a/3", ""}}},
		{listParams{prefix: "a/2/", delimiter: "/", max: 1000}, []page{{"a/2/x,a/2/y", ""}}},
		{listParams{prefix: "zz", max: 1000}, []page{{"", ""}}},
		{listParams{after: "a/3", max: 1000}, []page{{"b,b/1,c/d/e,d", ""}}},
		{listParams{delimiter: "d/", max: 1000}, []page{{"a,a/,a/1,a/2/x,a/2/y,a/3,b,b/1,d", "c/d/"}}},
		{listParams{max: 0}, []page{{"", ""}}},
	}
	for i, tc := range cases {
		got := collect(tc.p)
		if len(got) != len(tc.want) {
			t.Errorf("case %d: pages %v, want %v", i, got, tc.want)
			continue
		}
		for j := range got {
			if got[j] != tc.want[j] {
				t.Errorf("case %d page %d: %+v, want %+v", i, j, got[j], tc.want[j])
			}
		}
	}
	b.remove("a/2/x")
	b.remove("not-there")
	if strings.Join(b.keys, ",") != "a,a/,a/1,a/2/y,a/3,b,b/1,c/d/e,d" {
		t.Errorf("keys after remove: %v", b.keys)
	}
}
