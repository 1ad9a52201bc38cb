package main

import (
	"fmt"
	"strconv"
	"strings"
)

// parseSize reads sizes like 512, 64K, 1G, 1.5T (binary units).
func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(strings.ToUpper(s))
	s = strings.TrimSuffix(strings.TrimSuffix(s, "B"), "I")
	mult := int64(1)
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
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("%q is not a size (try 512M or 4G)", s)
	}
	size := int64(v * float64(mult))
	if size%512 != 0 {
		return 0, fmt.Errorf("%d bytes is not a multiple of 512", size)
	}
	return size, nil
}
