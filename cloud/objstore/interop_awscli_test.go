//go:build interop

package objstore

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestAWSCLIInterop runs the AWS CLI, unmodified, against the store:
// bucket, multipart upload and download, listing, head, presign, recursive
// delete. It runs with -tags interop; .ci/run installs Debian's awscli (AWS
// CLI v2 at /usr/bin/aws, which is preferred to an older aws on PATH).
func TestAWSCLIInterop(t *testing.T) {
	aws := "/usr/bin/aws"
	if _, err := os.Stat(aws); err != nil {
		var lerr error
		if aws, lerr = exec.LookPath("aws"); lerr != nil {
			t.Fatalf("the interop suite needs the AWS CLI: apt-get install -y awscli (%v)", lerr)
		}
	}
	e := newEnv(t, false)
	dir := t.TempDir()
	// A private config: region and a small multipart threshold, no profile
	// or credentials file from the machine.
	cfg := "[default]\nregion = " + testRegion + "\ns3 =\n  multipart_threshold = 6MB\n  multipart_chunksize = 5MB\n"
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	big := randomBytes(31, 13<<20+5)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"AWS_ACCESS_KEY_ID="+testCreds.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+testCreds.SecretAccessKey,
		"AWS_CONFIG_FILE="+filepath.Join(dir, "config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(dir, "none"),
		"AWS_EC2_METADATA_DISABLED=true")
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(aws, append([]string{"--endpoint-url", e.srv.URL}, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("s3", "mb", "s3://cli-bucket")
	run("s3", "cp", "--no-progress", filepath.Join(dir, "big.bin"), "s3://cli-bucket/dir/big file.bin")
	run("s3", "cp", "--no-progress", filepath.Join(dir, "config"), "s3://cli-bucket/dir/sub/config")
	if info, err := e.store.Stat("cli-bucket", "dir/big file.bin"); err != nil || info.SHA256 != sum256(big) || !strings.HasSuffix(info.ETag, `-3"`) {
		t.Fatalf("after aws s3 cp: %+v %v", info, err)
	}
	if out := run("s3", "ls", "s3://cli-bucket/dir/"); !strings.Contains(out, "PRE sub/") || !strings.Contains(out, "big file.bin") {
		t.Errorf("aws s3 ls:\n%s", out)
	}
	if out := run("s3api", "head-object", "--bucket", "cli-bucket", "--key", "dir/big file.bin"); !strings.Contains(out, `"ContentLength": 13631493`) {
		t.Errorf("aws s3api head-object:\n%s", out)
	}
	run("s3", "cp", "--no-progress", "s3://cli-bucket/dir/big file.bin", filepath.Join(dir, "back.bin"))
	if back, err := os.ReadFile(filepath.Join(dir, "back.bin")); err != nil || !bytes.Equal(back, big) {
		t.Fatalf("aws s3 cp download differs: %v", err)
	}
	url := strings.TrimSpace(run("s3", "presign", "s3://cli-bucket/dir/sub/config", "--expires-in", "60"))
	if resp, body := e.httpDo("GET", url, nil); resp.StatusCode != 200 || string(body) != cfg {
		t.Errorf("GET of the CLI's presigned URL: %s", resp.Status)
	}
	run("s3", "rm", "--recursive", "s3://cli-bucket/dir/")
	run("s3", "rb", "s3://cli-bucket")
	if bs, _ := e.store.Buckets(); len(bs) != 0 {
		t.Errorf("buckets left: %v", bs)
	}
}
