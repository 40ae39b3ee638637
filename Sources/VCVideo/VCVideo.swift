// VCVideo
