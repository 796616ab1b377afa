package delta

// suffixSort returns the suffix array of b, with len(b)+1 entries (the
// empty suffix first), built by Larsson and Sadakane's qsufsort as bsdiff
// does. index/suffixarray builds the same array but does not expose it,
// and matching needs it to find the longest match of any prefix.
func suffixSort(b []byte) []int32 {
	n := len(b)
	I := make([]int32, n+1)
	V := make([]int32, n+1)
	var buckets [256]int32
	for _, c := range b {
		buckets[c]++
	}
	for i := 1; i < 256; i++ {
		buckets[i] += buckets[i-1]
	}
	for i := 255; i > 0; i-- {
		buckets[i] = buckets[i-1]
	}
	buckets[0] = 0
	for i, c := range b {
		buckets[c]++
		I[buckets[c]] = int32(i)
	}
	I[0] = int32(n)
	for i, c := range b {
		V[i] = buckets[c]
	}
	V[n] = 0
	for i := 1; i < 256; i++ {
		if buckets[i] == buckets[i-1]+1 {
			I[buckets[i]] = -1
		}
	}
	I[0] = -1
	for h := int32(1); I[0] != -int32(n+1); h += h {
		var ln int32
		i := int32(0)
		for i < int32(n+1) {
			if I[i] < 0 {
				ln -= I[i]
				i -= I[i]
			} else {
				if ln != 0 {
					I[i-ln] = -ln
				}
				ln = V[I[i]] + 1 - i
				split(I, V, i, ln, h)
				i += ln
				ln = 0
			}
		}
		if ln != 0 {
			I[i-ln] = -ln
		}
	}
	for i := 0; i < n+1; i++ {
		I[V[i]] = int32(i)
	}
	return I
}

func split(I, V []int32, start, ln, h int32) {
	if ln < 16 {
		var j int32
		for k := start; k < start+ln; k += j {
			j = 1
			x := V[I[k]+h]
			for i := int32(1); k+i < start+ln; i++ {
				if V[I[k+i]+h] < x {
					x = V[I[k+i]+h]
					j = 0
				}
				if V[I[k+i]+h] == x {
					I[k+j], I[k+i] = I[k+i], I[k+j]
					j++
				}
			}
			for i := int32(0); i < j; i++ {
				V[I[k+i]] = k + j - 1
			}
			if j == 1 {
				I[k] = -1
			}
		}
		return
	}
	x := V[I[start+ln/2]+h]
	var jj, kk int32
	for i := start; i < start+ln; i++ {
		if V[I[i]+h] < x {
			jj++
		}
		if V[I[i]+h] == x {
			kk++
		}
	}
	jj += start
	kk += jj
	i, j, k := start, int32(0), int32(0)
	for i < jj {
		if V[I[i]+h] < x {
			i++
		} else if V[I[i]+h] == x {
			I[i], I[jj+j] = I[jj+j], I[i]
			j++
		} else {
			I[i], I[kk+k] = I[kk+k], I[i]
			k++
		}
	}
	for jj+j < kk {
		if V[I[jj+j]+h] == x {
			j++
		} else {
			I[jj+j], I[kk+k] = I[kk+k], I[jj+j]
			k++
		}
	}
	if jj > start {
		split(I, V, start, jj-start, h)
	}
	for i := int32(0); i < kk-jj; i++ {
		V[I[jj+i]] = kk - 1
	}
	if jj == kk-1 {
		I[jj] = -1
	}
	if start+ln > kk {
		split(I, V, kk, start+ln-kk, h)
	}
}
