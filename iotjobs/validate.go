package iotjobs

import (
	"fmt"
	"sort"
)

func validName(s string, max int, extra string) error {
	if len(s) == 0 || len(s) > max {
		return fmt.Errorf("length %d is outside 1..%d", len(s), max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
		for j := 0; !ok && j < len(extra); j++ {
			ok = c == extra[j]
		}
		if !ok {
			return fmt.Errorf("character %q at %d is not allowed (use [a-zA-Z0-9_-%s])", c, i, extra)
		}
	}
	return nil
}

// ValidateJobID checks a job id against AWS's rule: 1–64 of [a-zA-Z0-9_-].
func ValidateJobID(id string) error {
	if err := validName(id, MaxJobIDLen, ""); err != nil {
		return fmt.Errorf("invalid job id %q: %w", id, err)
	}
	return nil
}

// ValidateThingName checks a thing name against AWS's rule: 1–128 of
// [a-zA-Z0-9:_-].
func ValidateThingName(name string) error {
	if err := validName(name, MaxThingNameLen, ":"); err != nil {
		return fmt.Errorf("invalid thing name %q: %w", name, err)
	}
	return nil
}

// ValidateStatusDetails checks the limits AWS puts on statusDetails: at most
// 10 pairs, keys of 1–128 [a-zA-Z0-9:_-], values of 1–1024 characters without
// control characters.
func ValidateStatusDetails(sd StatusDetails) error {
	if len(sd) > MaxStatusDetails {
		return fmt.Errorf("statusDetails has %d entries; at most %d are allowed", len(sd), MaxStatusDetails)
	}
	keys := make([]string, 0, len(sd))
	for k := range sd {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := validName(k, MaxStatusDetailKeyLen, ":"); err != nil {
			return fmt.Errorf("statusDetails key %q: %w", k, err)
		}
		v := sd[k]
		n := 0
		for _, r := range v {
			n++
			if r < 0x20 || r == 0x7f {
				return fmt.Errorf("statusDetails value of %q holds control character %U", k, r)
			}
		}
		if n == 0 || n > MaxStatusDetailValLen {
			return fmt.Errorf("statusDetails value of %q has %d characters; 1..%d are allowed", k, n, MaxStatusDetailValLen)
		}
	}
	return nil
}

// ValidateClientToken checks the 64-character limit of clientToken.
func ValidateClientToken(tok string) error {
	if len(tok) > MaxClientTokenLen {
		return fmt.Errorf("clientToken has %d characters; at most %d are allowed", len(tok), MaxClientTokenLen)
	}
	return nil
}
