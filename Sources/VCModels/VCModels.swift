// VCModels
