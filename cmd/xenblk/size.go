package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// parseSize reads a size as every command that takes one does: a number of
// bytes, or with a binary unit K, M, G or T (KiB, MB and the like too:
// units are powers of 1024), fractions allowed (1.5G). The result is a
// positive whole number of 512-byte sectors. The errors do not repeat the
// text: the flag's error (sizeValue) quotes it as given.
func parseSize(given string) (int64, error) {
	s := strings.TrimSpace(strings.ToUpper(given))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := float64(1)
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'K':
			mult = 1 << 10
		case 'M':
			mult = 1 << 20
		case 'G':
			mult = 1 << 30
		case 'T':
			mult = 1 << 40
		}
		if mult > 1 {
			s = s[:n-1]
		}
	}
	// ParseFloat takes "Inf", "NaN" and hexadecimal; a size is none of those.
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "INXP") || math.IsNaN(v) {
		return 0, errors.New("not a size (try 512M or 4G)")
	}
	if v <= 0 {
		return 0, errors.New("a size must be more than 0 (try 512M or 4G)")
	}
	bytes := v * mult
	if bytes >= math.MaxInt64 {
		return 0, errors.New("too large (at most 8388607T)")
	}
	size := int64(bytes)
	if size%512 != 0 || float64(size) != bytes {
		return 0, fmt.Errorf("%v bytes, not a whole number of 512-byte sectors (try %dK)", bytes, (size+1023)/1024)
	}
	return size, nil
}

// formatSize writes a size in the largest binary unit that keeps it whole,
// as parseSize reads it back.
func formatSize(n int64) string {
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"T", 40}, {"G", 30}, {"M", 20}, {"K", 10}} {
		if n != 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// sizeValue is a flag holding a size (parseSize); a bad one is a usage
// mistake reported before the command runs, quoting what was given.
type sizeValue int64

func (v *sizeValue) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*v = sizeValue(n)
	return nil
}

func (v *sizeValue) String() string { return formatSize(int64(*v)) }
func (v *sizeValue) Type() string   { return "size" }
