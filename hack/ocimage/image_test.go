package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// readTar returns the regular files and the headers of all entries in a tar.
func readTar(t *testing.T, data []byte) (map[string][]byte, map[string]*tar.Header, []string) {
	t.Helper()
	files := map[string][]byte{}
	hdrs := map[string]*tar.Header{}
	var order []string
	tr := tar.NewReader(bytes.NewReader(data))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := hdrs[h.Name]; dup {
			t.Fatalf("duplicate tar entry %q", h.Name)
		}
		hdrs[h.Name] = h
		order = append(order, h.Name)
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = b
		}
	}
	return files, hdrs, order
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// blobAt checks that the descriptor's blob exists with matching digest/size.
func blobAt(t *testing.T, files map[string][]byte, d descriptor) []byte {
	t.Helper()
	p := "blobs/sha256/" + strings.TrimPrefix(d.Digest, "sha256:")
	b, ok := files[p]
	if !ok {
		t.Fatalf("missing blob %s", p)
	}
	if got := sha(b); got != d.Digest {
		t.Fatalf("blob %s has digest %s", p, got)
	}
	if int64(len(b)) != d.Size {
		t.Fatalf("blob %s has size %d, descriptor says %d", p, len(b), d.Size)
	}
	return b
}

func unmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
}

// checkImage validates an image tarball and returns the layer's files/headers.
func checkImage(t *testing.T, tarball []byte, wantName, wantEntrypoint string, wantBin []byte) imageConfig {
	t.Helper()
	files, hdrs, order := readTar(t, tarball)
	for i := 1; i < len(order); i++ {
		if order[i-1] > order[i] && !strings.HasPrefix(order[i], "blobs/") {
			t.Errorf("entries not sorted: %q before %q", order[i-1], order[i])
		}
	}
	for _, h := range hdrs {
		if !h.ModTime.Equal(epoch) {
			t.Errorf("%s: mtime %v", h.Name, h.ModTime)
		}
	}
	if got := string(files["oci-layout"]); got != `{"imageLayoutVersion":"1.0.0"}` {
		t.Fatalf("oci-layout = %q", got)
	}
	var idx index
	unmarshal(t, files["index.json"], &idx)
	if idx.SchemaVersion != 2 || idx.MediaType != mediaTypeIndex || len(idx.Manifests) != 1 {
		t.Fatalf("bad index: %s", files["index.json"])
	}
	md := idx.Manifests[0]
	if md.MediaType != mediaTypeManifest {
		t.Fatalf("manifest media type %q", md.MediaType)
	}
	if md.Annotations[annotationRefName] != wantName || md.Annotations[annotationContainerdName] != wantName {
		t.Fatalf("annotations %v, want name %q", md.Annotations, wantName)
	}
	if md.Platform == nil || md.Platform.OS != "linux" || md.Platform.Architecture == "" {
		t.Fatalf("platform %+v", md.Platform)
	}

	var mf manifest
	unmarshal(t, blobAt(t, files, md), &mf)
	if mf.SchemaVersion != 2 || mf.MediaType != mediaTypeManifest || mf.Config.MediaType != mediaTypeConfig ||
		len(mf.Layers) != 1 || mf.Layers[0].MediaType != mediaTypeLayerGz {
		t.Fatalf("bad manifest %+v", mf)
	}
	var cfg imageConfig
	unmarshal(t, blobAt(t, files, mf.Config), &cfg)
	gz := blobAt(t, files, mf.Layers[0])

	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("gzip header has name %q mtime %v", zr.Name, zr.ModTime)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != sha(raw) || cfg.RootFS.Type != "layers" {
		t.Fatalf("rootfs %+v, sha of uncompressed layer %s", cfg.RootFS, sha(raw))
	}
	if cfg.OS != "linux" || cfg.Architecture != md.Platform.Architecture {
		t.Errorf("config os/arch %s/%s", cfg.OS, cfg.Architecture)
	}
	if cfg.Config.User != "65532:65532" || len(cfg.Config.Entrypoint) != 1 || cfg.Config.Entrypoint[0] != wantEntrypoint {
		t.Errorf("config %+v", cfg.Config)
	}
	if len(cfg.History) != 1 {
		t.Errorf("history %+v", cfg.History)
	}

	// docker-archive compatibility.
	var dm []dockerManifestEntry
	unmarshal(t, files["manifest.json"], &dm)
	if len(dm) != 1 || dm[0].Config != "blobs/sha256/"+strings.TrimPrefix(mf.Config.Digest, "sha256:") ||
		len(dm[0].Layers) != 1 || dm[0].Layers[0] != "blobs/sha256/"+strings.TrimPrefix(mf.Layers[0].Digest, "sha256:") ||
		len(dm[0].RepoTags) != 1 || dm[0].RepoTags[0] != wantName {
		t.Errorf("manifest.json %s", files["manifest.json"])
	}
	if _, ok := files["repositories"]; !ok {
		t.Errorf("missing repositories")
	}

	// Layer contents.
	lfiles, lhdrs, _ := readTar(t, raw)
	rel := strings.TrimPrefix(wantEntrypoint, "/")
	h := lhdrs[rel]
	if h == nil {
		t.Fatalf("layer has no %s", rel)
	}
	if h.Mode != 0o755 || h.Uid != 65532 || h.Gid != 65532 || h.Typeflag != tar.TypeReg {
		t.Errorf("binary header mode %o uid %d gid %d type %c", h.Mode, h.Uid, h.Gid, h.Typeflag)
	}
	if wantBin != nil && !bytes.Equal(lfiles[rel], wantBin) {
		t.Errorf("binary content differs")
	}
	if h := lhdrs["tmp/"]; h == nil || h.Typeflag != tar.TypeDir || h.Mode != 0o1777 {
		t.Errorf("tmp/ entry %+v", h)
	}
	if !strings.Contains(string(lfiles["etc/passwd"]), "nonroot:x:65532:65532:") {
		t.Errorf("etc/passwd = %q", lfiles["etc/passwd"])
	}
	if !strings.Contains(string(lfiles["etc/group"]), "nonroot:x:65532:") {
		t.Errorf("etc/group = %q", lfiles["etc/group"])
	}
	for d := filepathDir(rel); d != "."; d = filepathDir(d) {
		if h := lhdrs[d+"/"]; h == nil || h.Typeflag != tar.TypeDir {
			t.Errorf("missing parent dir %s/", d)
		}
	}
	return cfg
}

func filepathDir(p string) string { return filepath.ToSlash(filepath.Dir(p)) }

func TestBuild(t *testing.T) {
	bin := []byte("#!/bin/true\nnot really a binary\n")
	o := Options{Binary: bin, Name: "agentplane.local/agentplane:dev", Entrypoint: "/agentplane", Arch: "amd64"}
	a, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, a, "agentplane.local/agentplane:dev", "/agentplane", bin)
	b, err := Build(o)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two builds from the same inputs differ")
	}
}

func TestBuildNestedEntrypointAndCmd(t *testing.T) {
	bin := []byte("x")
	a, err := Build(Options{Binary: bin, Name: "tool", Entrypoint: "/usr/local/bin/tool", Cmd: []string{"serve"}, Arch: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := checkImage(t, a, "docker.io/library/tool:latest", "/usr/local/bin/tool", bin)
	if cfg.Architecture != "arm64" || len(cfg.Config.Cmd) != 1 || cfg.Config.Cmd[0] != "serve" {
		t.Errorf("config %+v", cfg)
	}
}

func TestBuildRejects(t *testing.T) {
	for _, o := range []Options{
		{Binary: nil, Name: "a", Entrypoint: "/a", Arch: "amd64"},
		{Binary: []byte("x"), Name: "", Entrypoint: "/a", Arch: "amd64"},
		{Binary: []byte("x"), Name: "a", Entrypoint: "a", Arch: "amd64"},
		{Binary: []byte("x"), Name: "a", Entrypoint: "/a/../b", Arch: "amd64"},
		{Binary: []byte("x"), Name: "a", Entrypoint: "/etc/passwd", Arch: "amd64"},
		{Binary: []byte("x"), Name: "a", Entrypoint: "/tmp", Arch: "amd64"},
		{Binary: []byte("x"), Name: "a", Entrypoint: "/", Arch: "amd64"},
	} {
		if _, err := Build(o); err == nil {
			t.Errorf("Build(%+v) succeeded", o)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"pause":                           "docker.io/library/pause:latest",
		"pause:3.10":                      "docker.io/library/pause:3.10",
		"foo/bar":                         "docker.io/foo/bar:latest",
		"agentplane.local/agentplane:dev": "agentplane.local/agentplane:dev",
		"localhost/x":                     "localhost/x:latest",
		"localhost:5000/x:1":              "localhost:5000/x:1",
		"registry.k8s.io/pause:3.10":      "registry.k8s.io/pause:3.10",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRun exercises the command line end to end, including the file output.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "agentplane")
	if err := os.WriteFile(bin, []byte("binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	out1, out2 := filepath.Join(dir, "1.tar"), filepath.Join(dir, "2.tar")
	for _, out := range []string{out1, out2} {
		if err := run([]string{"-binary", bin, "-name", "agentplane.local/agentplane:dev", "-out", out}); err != nil {
			t.Fatal(err)
		}
	}
	a, _ := os.ReadFile(out1)
	b, _ := os.ReadFile(out2)
	if !bytes.Equal(a, b) {
		t.Fatal("outputs differ")
	}
	checkImage(t, a, "agentplane.local/agentplane:dev", "/agentplane", []byte("binary"))
}

// TestPause builds the embedded pause program (needs the go command).
func TestPause(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles a Go program")
	}
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("no go command")
	}
	out := filepath.Join(t.TempDir(), "pause.tar")
	if err := run([]string{"-pause", "-name", "agentplane.local/pause:dev", "-out", out}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	checkImage(t, data, "agentplane.local/pause:dev", "/pause", nil)
	if runtime.GOOS == "linux" {
		// The embedded program must run: -v prints and exits.
		bin, err := buildPause(runtime.GOARCH)
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "pause")
		if err := os.WriteFile(p, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if msg, err := exec.Command(p, "-v").CombinedOutput(); err != nil || !strings.Contains(string(msg), "pause") {
			t.Fatalf("pause -v: %v %s", err, msg)
		}
	}
}

func TestRunRejectsDynamicELF(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		t.Skip(err)
	}
	if elfInterpreter(data) == "" {
		t.Skip("test binary is not a dynamic ELF")
	}
	out := filepath.Join(t.TempDir(), "x.tar")
	if err := run([]string{"-binary", self, "-name", "x", "-out", out}); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Fatalf("err = %v", err)
	}
	if err := run([]string{"-binary", self, "-name", "x", "-out", out, "-allow-dynamic"}); err != nil {
		t.Fatal(err)
	}
}
