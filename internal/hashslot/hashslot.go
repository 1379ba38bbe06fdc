// Package hashslot computes Redis Cluster's slot of a key, as CLUSTER
// KEYSLOT does.
package hashslot

import "strings"

// Slots is the number of slots of a Redis Cluster.
const Slots = 16384

// Of is the slot of a key: CRC16 (XMODEM) of its hash tag — what lies
// between its first "{" and the next "}", when that is not empty — or of
// the whole key, modulo 16384.
func Of(key string) int {
	if s := strings.IndexByte(key, '{'); s >= 0 {
		if e := strings.IndexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	return int(crc16(key) % Slots)
}

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}
