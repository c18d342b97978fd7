# Convenience front end; every target does its own set-up.
.PHONY: demo test build clean
demo:            ## install missing packages, build, train the quickstart
	scripts/demo.sh
test:            ## install missing packages, build (normal + ASan/UBSan), run every test
	scripts/test.sh
build:
	scripts/build.sh build
clean:
	rm -rf build build-asan
