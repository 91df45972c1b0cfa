package testutil

import "encoding/base64"

// ReadableForms are the ways s can be read in stored bytes: as is, or inside base64 (as a JSON
// []byte field is stored) at any of the three byte alignments. A test that checks that patient
// data does not reach the disk in clear looks for all of them.
func ReadableForms(s string) []string {
	forms := []string{s}
	for k := range 3 {
		enc := base64.StdEncoding.EncodeToString(append(make([]byte, k), s...))
		forms = append(forms, enc[(k*4+2)/3+1:len(enc)-4])
	}
	return forms
}
