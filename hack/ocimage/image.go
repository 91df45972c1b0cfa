package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"
)

// Media types and annotations used in the image.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"

	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"

	nonrootID = 65532
)

// epoch is the fixed timestamp used for every tar entry and for "created".
var epoch = time.Unix(0, 0).UTC()

// Options describes the image to build.
type Options struct {
	Binary     []byte   // contents of the executable
	Name       string   // image reference, e.g. agentplane.local/agentplane:dev
	Entrypoint string   // absolute path of the binary inside the image
	Cmd        []string // optional default arguments (config.Cmd)
	Arch       string   // GOARCH-style architecture, e.g. amd64
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

type imageConfig struct {
	Created      string `json:"created"`
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string   `json:"User"`
		Env        []string `json:"Env"`
		Entrypoint []string `json:"Entrypoint"`
		Cmd        []string `json:"Cmd,omitempty"`
		WorkingDir string   `json:"WorkingDir"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
	History []struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
		Comment   string `json:"comment,omitempty"`
	} `json:"history"`
}

// dockerManifestEntry is one element of the docker-archive manifest.json.
type dockerManifestEntry struct {
	Config   string   `json:"Config"`
	RepoTags []string `json:"RepoTags"`
	Layers   []string `json:"Layers"`
}

type blob struct {
	digest string // "sha256:<hex>"
	data   []byte
}

func newBlob(data []byte) blob {
	sum := sha256.Sum256(data)
	return blob{digest: "sha256:" + hex.EncodeToString(sum[:]), data: data}
}

func (b blob) hex() string { return strings.TrimPrefix(b.digest, "sha256:") }

// Build returns the bytes of an OCI image layout tarball (which also carries a
// docker-archive manifest.json) holding a single-layer image.
func Build(o Options) ([]byte, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	fullName := NormalizeName(o.Name)

	rawLayer, err := buildLayer(o.Binary, o.Entrypoint)
	if err != nil {
		return nil, err
	}
	diffID := newBlob(rawLayer).digest
	gz, err := gzipBytes(rawLayer)
	if err != nil {
		return nil, err
	}
	layer := newBlob(gz)

	var cfg imageConfig
	cfg.Created = epoch.Format(time.RFC3339)
	cfg.Architecture = o.Arch
	cfg.OS = "linux"
	cfg.Config.User = fmt.Sprintf("%d:%d", nonrootID, nonrootID)
	cfg.Config.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cfg.Config.Entrypoint = []string{o.Entrypoint}
	cfg.Config.Cmd = o.Cmd
	cfg.Config.WorkingDir = "/"
	cfg.RootFS.Type = "layers"
	cfg.RootFS.DiffIDs = []string{diffID}
	cfg.History = append(cfg.History, struct {
		Created   string `json:"created"`
		CreatedBy string `json:"created_by"`
		Comment   string `json:"comment,omitempty"`
	}{cfg.Created, "hack/ocimage", "single static binary at " + o.Entrypoint})
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	config := newBlob(cfgJSON)

	mf := manifest{
		SchemaVersion: 2,
		MediaType:     mediaTypeManifest,
		Config:        descriptor{MediaType: mediaTypeConfig, Digest: config.digest, Size: int64(len(config.data))},
		Layers:        []descriptor{{MediaType: mediaTypeLayerGz, Digest: layer.digest, Size: int64(len(layer.data))}},
	}
	mfJSON, err := json.Marshal(mf)
	if err != nil {
		return nil, err
	}
	mfBlob := newBlob(mfJSON)

	idx := index{
		SchemaVersion: 2,
		MediaType:     mediaTypeIndex,
		Manifests: []descriptor{{
			MediaType: mediaTypeManifest,
			Digest:    mfBlob.digest,
			Size:      int64(len(mfBlob.data)),
			Platform:  &platform{Architecture: o.Arch, OS: "linux"},
			Annotations: map[string]string{
				// containerd's importer names the image from this one first;
				// ref.name alone would be dropped by `ctr import` unless it
				// matches --base-name.
				annotationContainerdName: fullName,
				annotationRefName:        fullName,
			},
		}},
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return nil, err
	}

	dockerJSON, err := json.Marshal([]dockerManifestEntry{{
		Config:   "blobs/sha256/" + config.hex(),
		RepoTags: []string{fullName},
		Layers:   []string{"blobs/sha256/" + layer.hex()},
	}})
	if err != nil {
		return nil, err
	}
	repo, tag := splitTag(fullName)
	reposJSON, err := json.Marshal(map[string]map[string]string{repo: {tag: layer.hex()}})
	if err != nil {
		return nil, err
	}

	files := map[string][]byte{
		"oci-layout":    []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json":    idxJSON,
		"manifest.json": dockerJSON,
		"repositories":  reposJSON,
	}
	for _, b := range []blob{layer, config, mfBlob} {
		files["blobs/sha256/"+b.hex()] = b.data
	}
	var out tarWriter
	out.dir("blobs/", 0o755, 0)
	out.dir("blobs/sha256/", 0o755, 0)
	for _, name := range sortedKeys(files) {
		out.file(name, files[name], 0o644, 0)
	}
	return out.close()
}

func (o Options) validate() error {
	if len(o.Binary) == 0 {
		return fmt.Errorf("empty binary")
	}
	if o.Name == "" {
		return fmt.Errorf("image name is required")
	}
	if o.Arch == "" {
		return fmt.Errorf("architecture is required")
	}
	ep := o.Entrypoint
	if !strings.HasPrefix(ep, "/") || path.Clean(ep) != ep || ep == "/" {
		return fmt.Errorf("entrypoint %q must be a clean absolute file path", ep)
	}
	switch {
	case ep == "/etc" || ep == "/tmp" || strings.HasPrefix(ep, "/etc/") || strings.HasPrefix(ep, "/tmp/"):
		return fmt.Errorf("entrypoint %q collides with /etc or /tmp", ep)
	}
	return nil
}

// buildLayer returns the uncompressed layer tar: the binary, /tmp, and a
// minimal /etc/passwd and /etc/group with root and nonroot (65532).
func buildLayer(bin []byte, entrypoint string) ([]byte, error) {
	type entry struct {
		data  []byte
		mode  int64
		owner int
		dir   bool
	}
	entries := map[string]entry{
		"etc/":          {mode: 0o755, dir: true},
		"etc/passwd":    {data: []byte("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"), mode: 0o644},
		"etc/group":     {data: []byte("root:x:0:\nnonroot:x:65532:\n"), mode: 0o644},
		"home/":         {mode: 0o755, dir: true},
		"home/nonroot/": {mode: 0o700, owner: nonrootID, dir: true},
		"tmp/":          {mode: 0o1777, dir: true},
	}
	rel := strings.TrimPrefix(entrypoint, "/")
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if _, ok := entries[d+"/"]; !ok {
			entries[d+"/"] = entry{mode: 0o755, dir: true}
		}
	}
	if _, ok := entries[rel+"/"]; ok {
		return nil, fmt.Errorf("entrypoint %q collides with a directory", entrypoint)
	}
	entries[rel] = entry{data: bin, mode: 0o755, owner: nonrootID}

	var tw tarWriter
	for _, name := range sortedKeys(entries) {
		e := entries[name]
		if e.dir {
			tw.dir(name, e.mode, e.owner)
		} else {
			tw.file(name, e.data, e.mode, e.owner)
		}
	}
	return tw.close()
}

// tarWriter writes deterministic tar entries and remembers the first error.
type tarWriter struct {
	buf bytes.Buffer
	tw  *tar.Writer
	err error
}

func (t *tarWriter) header(h *tar.Header, data []byte) {
	if t.tw == nil {
		t.tw = tar.NewWriter(&t.buf)
	}
	if t.err != nil {
		return
	}
	h.ModTime = epoch
	h.Format = tar.FormatPAX
	if h.Uid == nonrootID {
		h.Uname, h.Gname = "nonroot", "nonroot"
	} else {
		h.Uname, h.Gname = "root", "root"
	}
	if t.err = t.tw.WriteHeader(h); t.err == nil && len(data) > 0 {
		_, t.err = t.tw.Write(data)
	}
}

func (t *tarWriter) dir(name string, mode int64, owner int) {
	t.header(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, Uid: owner, Gid: owner}, nil)
}

func (t *tarWriter) file(name string, data []byte, mode int64, owner int) {
	t.header(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Uid: owner, Gid: owner, Size: int64(len(data))}, data)
}

func (t *tarWriter) close() ([]byte, error) {
	if t.tw == nil {
		t.tw = tar.NewWriter(&t.buf)
	}
	if t.err != nil {
		return nil, t.err
	}
	if err := t.tw.Close(); err != nil {
		return nil, err
	}
	return t.buf.Bytes(), nil
}

// gzipBytes compresses with an empty gzip header (no name, zero mtime).
func gzipBytes(data []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(zw, bytes.NewReader(data)); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// NormalizeName turns a short reference into the fully qualified name that
// the CRI plugin looks up: "pause:3.10" -> "docker.io/library/pause:3.10",
// "foo/bar" -> "docker.io/foo/bar:latest". References with a registry host
// (a first component with '.' or ':' or equal to "localhost") are kept, and
// ":latest" is added when there is neither tag nor digest.
func NormalizeName(ref string) string {
	name := ref
	if i := strings.IndexByte(name, '/'); i < 0 {
		name = "docker.io/library/" + name
	} else if first := name[:i]; !strings.ContainsAny(first, ".:") && first != "localhost" {
		name = "docker.io/" + name
	}
	if strings.Contains(name, "@") {
		return name
	}
	if last := name[strings.LastIndexByte(name, '/')+1:]; !strings.Contains(last, ":") {
		name += ":latest"
	}
	return name
}

// splitTag splits a normalized name into repository and tag (or digest).
func splitTag(name string) (repo, tag string) {
	if i := strings.IndexByte(name, '@'); i >= 0 {
		return name[:i], name[i+1:]
	}
	slash := strings.LastIndexByte(name, '/')
	if i := strings.LastIndexByte(name, ':'); i > slash {
		return name[:i], name[i+1:]
	}
	return name, "latest"
}
