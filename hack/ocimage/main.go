// Command ocimage packs one static Linux binary into a single-layer OCI image
// tarball (no base image, no registry) that `ctr -n k8s.io images import`
// accepts. See README.md.
//
//	go run ./hack/ocimage -binary bin/agentplane -name agentplane.local/agentplane:dev \
//	    -entrypoint /agentplane -out /tmp/agentplane.tar
//	go run ./hack/ocimage -pause -name agentplane.local/pause:dev -out /tmp/pause.tar
//
// Arguments after the flags become the image's default Cmd.
package main

import (
	"bytes"
	"debug/elf"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ocimage:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ocimage", flag.ContinueOnError)
	binary := fs.String("binary", "", "static linux binary to pack (with -pause: optional prebuilt pause binary)")
	pause := fs.Bool("pause", false, "pack a pause (sandbox) binary; built from the embedded pause/main.go unless -binary is given")
	name := fs.String("name", "", "image reference, e.g. agentplane.local/agentplane:dev (short names get docker.io/library/ and :latest)")
	entrypoint := fs.String("entrypoint", "", "absolute path of the binary in the image (default /<binary base name>, or /pause with -pause)")
	out := fs.String("out", "", "output tarball path")
	arch := fs.String("arch", runtime.GOARCH, "image architecture (GOARCH); also the GOARCH the pause binary is built for")
	allowDynamic := fs.Bool("allow-dynamic", false, "pack an ELF binary that needs a dynamic loader (it will not run: the image has no libc)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *name == "" || *out == "" {
		return fmt.Errorf("-name and -out are required")
	}
	if !*pause && *binary == "" {
		return fmt.Errorf("-binary is required unless -pause is given")
	}

	var data []byte
	var err error
	if *binary != "" {
		data, err = os.ReadFile(*binary)
	} else {
		data, err = buildPause(*arch)
	}
	if err != nil {
		return err
	}
	if interp := elfInterpreter(data); interp != "" && !*allowDynamic {
		return fmt.Errorf("%s is dynamically linked (interpreter %s) and cannot run in an image without a base; rebuild it with CGO_ENABLED=0 or pass -allow-dynamic", *binary, interp)
	}
	ep := *entrypoint
	if ep == "" {
		if *pause {
			ep = "/pause"
		} else {
			ep = "/" + filepath.Base(*binary)
		}
	}
	tarball, err := Build(Options{Binary: data, Name: *name, Entrypoint: ep, Cmd: fs.Args(), Arch: *arch})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(*out), ".ocimage-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(tarball); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), *out); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "ocimage: wrote %s (%s, %d bytes)\n", *out, NormalizeName(*name), len(tarball))
	return nil
}

// elfInterpreter returns the PT_INTERP path of an ELF binary, or "" when the
// data is not ELF or is statically linked.
func elfInterpreter(data []byte) string {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return ""
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			b := make([]byte, p.Filesz)
			if _, err := p.ReadAt(b, 0); err != nil {
				return "?"
			}
			return string(bytes.TrimRight(b, "\x00"))
		}
	}
	return ""
}
