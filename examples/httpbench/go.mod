module example.com/httpbench

go 1.26.8

require github.com/closeload/closeload v0.0.0

require (
	github.com/HdrHistogram/hdrhistogram-go v1.4.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)

replace github.com/closeload/closeload => ../..
